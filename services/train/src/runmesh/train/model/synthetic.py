"""Synthetic, learnable detection images: coloured shapes on a noisy grey textured background.

Each class name is `<colour>_<shape>` (for example `red_square`), so a class differs from the
others by shape *and* colour; the colour is jittered per object and the background is textured,
so a model has to learn something rather than read one pixel. Everything is drawn from the
caller's `numpy.random.Generator`, so a seed gives the same images on every machine.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from runmesh.train.model.boxes import Box

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 45, 45),
    "green": (45, 180, 60),
    "blue": (50, 70, 215),
    "yellow": (220, 200, 40),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
    "orange": (235, 130, 30),
    "purple": (120, 50, 180),
}
"""Base colours a class name may start with; each object jitters its colour around these."""

SHAPES = ("square", "circle", "triangle", "diamond")
"""Shapes a class name may end with."""

MIN_SIZE = 16
MAX_SIZE = 28
# Objects keep this many pixels apart so their boxes never overlap, not even by an edge.
_GAP = 2
_COLOUR_JITTER = 30
_PLACEMENT_TRIES = 200


def parse_class(name: str) -> tuple[tuple[int, int, int], str]:
    """Split a `<colour>_<shape>` class name into its base RGB colour and shape name."""
    colour, sep, shape = name.partition("_")
    if not sep or colour not in COLOURS or shape not in SHAPES:
        raise ValueError(
            f"synthetic class {name!r} must be <colour>_<shape> with colour in "
            f"{sorted(COLOURS)} and shape in {list(SHAPES)}"
        )
    return COLOURS[colour], shape


def _background(rng: np.random.Generator, width: int, height: int) -> npt.NDArray[np.float64]:
    """A grey-ish background: a tinted base level, a smooth low-frequency texture, pixel noise."""
    base = rng.uniform(80.0, 170.0) + rng.uniform(-12.0, 12.0, size=3)
    # A coarse random grid upsampled smoothly gives blotches a few objects wide, so windows of
    # plain background differ from each other and "background" is not a single colour.
    coarse = rng.uniform(-25.0, 25.0, size=(6, 6)).astype(np.float32)
    texture_img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    texture = np.asarray(texture_img, dtype=np.float64)
    noise = rng.normal(0.0, 8.0, size=(height, width, 3))
    return base[None, None, :] + texture[:, :, None] + noise


def _shape_mask(shape: str, size: int) -> npt.NDArray[np.bool_]:
    """A `size` x `size` mask of the shape, touching all four sides so the box is tight."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if shape == "square":
        return np.ones((size, size), dtype=np.bool_)
    if shape == "circle":
        radius = size / 2.0
        return np.asarray((xx - centre) ** 2 + (yy - centre) ** 2 <= radius**2 - 0.25)
    if shape == "triangle":
        # Apex at the top centre, base along the bottom row: half-width grows with the row.
        half_width = (yy + 1.0) / size * (size / 2.0)
        return np.asarray(np.abs(xx - centre) <= half_width)
    if shape == "diamond":
        return np.asarray(np.abs(xx - centre) + np.abs(yy - centre) <= size / 2.0)
    raise ValueError(f"unknown shape {shape!r}")


def _overlaps(box: Box, placed: Sequence[Box]) -> bool:
    """Whether `box` grown by the gap touches any already placed box."""
    x, y, w, h = box
    for px, py, pw, ph in placed:
        if x < px + pw + _GAP and px < x + w + _GAP and y < py + ph + _GAP and py < y + h + _GAP:
            return True
    return False


def make_synthetic_image(
    rng: np.random.Generator,
    width: int = 96,
    height: int = 96,
    classes: Sequence[str] = ("red_square", "green_circle", "blue_triangle"),
    max_objects: int = 3,
) -> tuple[npt.NDArray[np.uint8], list[tuple[str, Box]]]:
    """Draw one image with 1..`max_objects` non-overlapping shapes and return it with its boxes.

    Returns an `height` x `width` x 3 uint8 image and `(class_name, (x, y, w, h))` per object,
    in pixels, each box tight around its shape. Sizes are 16-28 px. When the image is too
    crowded to place another object without overlap, fewer objects are drawn (never zero).
    """
    if not classes:
        raise ValueError("classes must not be empty")
    if max_objects < 1:
        raise ValueError("max_objects must be at least 1")
    if width < MAX_SIZE + 2 * _GAP or height < MAX_SIZE + 2 * _GAP:
        raise ValueError(f"image must be at least {MAX_SIZE + 2 * _GAP} px on each side")
    specs = [parse_class(name) for name in classes]
    canvas = _background(rng, width, height)
    count = int(rng.integers(1, max_objects + 1))
    annotations: list[tuple[str, Box]] = []
    placed: list[Box] = []
    for _ in range(count):
        class_index = int(rng.integers(len(classes)))
        size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
        box: Box | None = None
        for _ in range(_PLACEMENT_TRIES):
            candidate: Box = (
                float(rng.integers(0, width - size + 1)),
                float(rng.integers(0, height - size + 1)),
                float(size),
                float(size),
            )
            if not _overlaps(candidate, placed):
                box = candidate
                break
        if box is None:
            continue
        base, shape = specs[class_index]
        colour = np.asarray(base, dtype=np.float64) + rng.uniform(
            -_COLOUR_JITTER, _COLOUR_JITTER, size=3
        )
        mask = _shape_mask(shape, size)
        x, y = int(box[0]), int(box[1])
        region = canvas[y : y + size, x : x + size]
        # Light per-pixel noise on the object too, so its pixels are not one flat colour.
        shaded = colour[None, None, :] + rng.normal(0.0, 6.0, size=(size, size, 3))
        region[mask] = shaded[mask]
        placed.append(box)
        annotations.append((classes[class_index], box))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, annotations


def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    """Encode an `H` x `W` x 3 uint8 image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_images(
    count: int, *, seed: int, size: int, classes: Sequence[str]
) -> list[tuple[npt.NDArray[np.uint8], list[tuple[str, Box]]]]:
    """`count` square images drawn one after another from one generator seeded by `seed`."""
    rng = np.random.default_rng(seed)
    return [make_synthetic_image(rng, size, size, classes=classes) for _ in range(count)]


def coco_files(
    images: Sequence[tuple[npt.NDArray[np.uint8], list[tuple[str, Box]]]],
    classes: Sequence[str],
) -> Iterator[tuple[str, bytes]]:
    """The images as a COCO dataset folder: (relative path, bytes) of `images/img-NNNN.png`
    each and of `annotations.json` last (category ids are 1.. in `classes` order)."""
    entries: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for index, (pixels, boxes) in enumerate(images, start=1):
        name = f"img-{index:04d}.png"
        yield f"images/{name}", encode_png(pixels)
        height, width = int(pixels.shape[0]), int(pixels.shape[1])
        entries.append({"id": index, "file_name": name, "width": width, "height": height})
        for class_name, box in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": list(classes).index(class_name) + 1,
                    "bbox": list(box),
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    document = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }
    yield "annotations.json", json.dumps(document).encode()
