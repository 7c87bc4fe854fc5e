"""The `runmesh dev` demo's sample dataset: generated images with boxes, the same every time.

One folder per file specification, as an upload in single-path mode reads it:
`image/sample-NNN.png` and `label/sample-NNN.json` (a DM document of that image's boxes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runmesh.train.model.synthetic import encode_png, synthetic_images

CLASSES = ("red_square", "green_circle", "blue_triangle")
IMAGE_SIZE = 64
SEED = 2026


@dataclass(slots=True, frozen=True)
class SampleDataset:
    """Where the sample dataset was written and what it holds."""

    root: Path
    images: int
    boxes: int


def write_sample_dataset(root: Path, count: int = 36) -> SampleDataset:
    """Write `count` images and their labels under `root` (replacing an earlier sample)."""
    images_dir, labels_dir = root / "image", root / "label"
    for folder in (images_dir, labels_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
    boxes = 0
    for index, (pixels, shapes) in enumerate(
        synthetic_images(count, seed=SEED, size=IMAGE_SIZE, classes=CLASSES)
    ):
        name = f"sample-{index:03d}"
        (images_dir / f"{name}.png").write_bytes(encode_png(pixels))
        annotations = [
            {
                "id": f"b{number}",
                "type": "bounding_box",
                "class_name": class_name,
                "bbox": [round(value, 2) for value in box],
            }
            for number, (class_name, box) in enumerate(shapes)
        ]
        document = {
            "images": [
                {
                    "file_name": f"{name}.png",
                    "width": int(pixels.shape[1]),
                    "height": int(pixels.shape[0]),
                    "annotations": annotations,
                }
            ]
        }
        (labels_dir / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")
        boxes += len(annotations)
    return SampleDataset(root=root, images=count, boxes=boxes)
