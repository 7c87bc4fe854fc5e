"""The COCO converter: pycocotools reads what it writes, and DM → COCO → DM is lossless."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from pycocotools.coco import COCO  # type: ignore[import-untyped]

from runmesh.converters.base import ConversionError, ConversionIssue
from runmesh.converters.coco import CocoWriter, read_coco
from runmesh.dm import (
    Annotation,
    BoundingBox,
    Classification,
    DMImage,
    Keypoints,
    Polygon,
)

CLASSES = ("person", "car", "tree")


def _dataset(seed: int = 7, count: int = 6) -> list[DMImage]:
    """Images with every shape, attributes of every type, full-precision floats."""
    rng = random.Random(seed)
    images: list[DMImage] = []
    for index in range(count):
        annotations: list[Annotation] = []
        for number in range(rng.randint(0, 5)):
            class_name = rng.choice(CLASSES)
            attributes = {"occluded": rng.random() < 0.5, "score": rng.random(), "n": number}
            kind = number % 3
            if kind == 0:
                box = (rng.uniform(0, 500), rng.uniform(0, 400), rng.uniform(0, 90), 12.5)
                annotations.append(
                    BoundingBox(
                        id=f"b{index}-{number}",
                        class_name=class_name,
                        attributes=attributes,
                        bbox=box,
                    )
                )
            elif kind == 1:
                # vertices around a centre in angle order: a simple (star-shaped) polygon
                cx, cy = rng.uniform(100, 540), rng.uniform(100, 380)
                angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(5))
                points = [
                    (cx + rng.uniform(20, 90) * math.cos(a), cy + rng.uniform(20, 90) * math.sin(a))
                    for a in angles
                ]
                annotations.append(
                    Polygon(id=f"p{index}-{number}", class_name=class_name, points=points)
                )
            else:
                keypoints = [
                    (rng.uniform(0, 640), rng.uniform(0, 480), rng.choice((0, 1, 2)))
                    for _ in range(rng.randint(1, 4))
                ]
                annotations.append(
                    Keypoints(
                        id=f"k{index}-{number}",
                        class_name="person",
                        attributes={"pose": "standing"},
                        points=keypoints,
                    )
                )
        images.append(
            DMImage(file_name=f"img_{index}.jpg", width=640, height=480, annotations=annotations)
        )
    return images


NOT_HELD = DMImage(
    file_name="extra.png",
    width=100,
    height=50,
    annotations=[
        BoundingBox(id="kept", class_name="car", bbox=(1, 2, 3, 4)),
        Classification(id="whole", class_name="tree"),
        BoundingBox(id="stranger", class_name="unicorn", bbox=(0, 0, 1, 1)),
    ],
)


def _write(root: Path, images: list[DMImage]) -> list[ConversionIssue]:
    writer = CocoWriter(root, CLASSES)
    issues = [issue for image in images for issue in writer.add(image)]
    assert writer.close() == ["annotations.json"]
    return issues


def _held(image: DMImage) -> DMImage:
    """The image as COCO holds it: without what the writer reported."""
    dropped = {"whole", "stranger"}
    annotations = [a for a in image.annotations if a.id not in dropped]
    return image.model_copy(update={"annotations": annotations})


# pycocotools' compiled mask code passes copy=False to __array__ (numpy 2 deprecates that)
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_pycocotools_reads_the_same_boxes_and_classes(tmp_path: Path) -> None:
    images = [*_dataset(), NOT_HELD]
    _write(tmp_path, images)

    coco = COCO(str(tmp_path / "annotations.json"))

    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    coco_images = coco.loadImgs(coco.getImgIds())
    assert [i["file_name"] for i in coco_images] == [i.file_name for i in images]
    for image, coco_image in zip(images, coco_images, strict=True):
        assert (coco_image["width"], coco_image["height"]) == (image.width, image.height)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[coco_image["id"]]))
        held = _held(image).annotations
        assert [a["dm_id"] for a in anns] == [a.id for a in held]
        for ann, annotation in zip(anns, held, strict=True):
            assert coco.loadCats(ann["category_id"])[0]["name"] == annotation.class_name
            assert ann["iscrowd"] == 0
            if isinstance(annotation, BoundingBox):
                assert ann["bbox"] == pytest.approx(annotation.bbox, rel=1e-6)
                assert ann["area"] == pytest.approx(
                    annotation.bbox[2] * annotation.bbox[3], rel=1e-6
                )
                assert ann["segmentation"] == []
            elif isinstance(annotation, Polygon):
                xs = [p[0] for p in annotation.points]
                ys = [p[1] for p in annotation.points]
                bounds = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
                assert ann["bbox"] == pytest.approx(bounds, rel=1e-6)
                # pycocotools' own area of the polygon's mask is close to the shoelace area
                assert ann["area"] == pytest.approx(float(coco.annToMask(ann).sum()), rel=0.2)
            else:
                assert isinstance(annotation, Keypoints)
                labelled = [p for p in annotation.points if p[2] > 0]
                assert ann["num_keypoints"] == len(labelled)
                assert len(ann["keypoints"]) == 3 * len(annotation.points)


def test_categories_have_stable_ids_and_keypoint_names(tmp_path: Path) -> None:
    images = [
        DMImage(
            file_name="a.jpg",
            width=10,
            height=10,
            annotations=[
                Keypoints(id="1", class_name="person", points=[(1, 1, 2), (2, 2, 0)]),
                Keypoints(id="2", class_name="person", points=[(1, 1, 2)] * 4),
                BoundingBox(id="3", class_name="tree", bbox=(0, 0, 1, 1)),
            ],
        )
    ]
    _write(tmp_path, images)

    document = json.loads((tmp_path / "annotations.json").read_text())
    assert document["categories"] == [
        {
            "id": 1,
            "name": "person",
            "supercategory": "",
            "keypoints": ["k0", "k1", "k2", "k3"],
            "skeleton": [],
        },
        {"id": 2, "name": "car", "supercategory": ""},
        {"id": 3, "name": "tree", "supercategory": ""},
    ]
    first = document["annotations"][0]
    assert first["keypoints"] == [1, 1, 2, 2, 2, 0]
    # only labelled points (v > 0) bound the object
    assert (first["bbox"], first["area"], first["num_keypoints"]) == ([1, 1, 0, 0], 0, 1)
    assert [a["id"] for a in document["annotations"]] == [1, 2, 3]


def test_read_coco_gives_back_the_same_dm(tmp_path: Path) -> None:
    images = [*_dataset(seed=11, count=20), NOT_HELD]
    _write(tmp_path, images)

    dataset = read_coco(tmp_path)

    assert dataset.classes == CLASSES
    assert dataset.images == [_held(image) for image in images]


def test_issues_name_the_classification_and_the_unknown_class(tmp_path: Path) -> None:
    issues = _write(tmp_path, [NOT_HELD])

    assert [(i.image, i.annotation_id) for i in issues] == [
        ("extra.png", "whole"),
        ("extra.png", "stranger"),
    ]
    assert "classification" in issues[0].reason
    assert "'unicorn'" in issues[1].reason


def test_layout_and_no_spool_left_behind(tmp_path: Path) -> None:
    writer = CocoWriter(tmp_path / "out", CLASSES)
    assert writer.image_path("a/b.jpg") == "images/a/b.jpg"
    writer.add(_dataset()[0])
    writer.close()

    assert [p.name for p in (tmp_path / "out").iterdir()] == ["annotations.json"]
    with pytest.raises(ValueError, match="closed"):
        writer.add(_dataset()[0])


def test_an_empty_dataset_is_valid_coco(tmp_path: Path) -> None:
    _write(tmp_path, [])

    assert COCO(str(tmp_path / "annotations.json")).getImgIds() == []
    assert read_coco(tmp_path).images == []


def test_a_coco_file_from_elsewhere_is_read(tmp_path: Path) -> None:
    document = {
        "images": [
            {"id": 9, "file_name": "b.jpg", "width": 4, "height": 4},
            {"id": 3, "file_name": "a.jpg", "width": 4, "height": 4},
        ],
        "categories": [{"id": 5, "name": "z"}, {"id": 2, "name": "y"}],
        "annotations": [
            {"id": 8, "image_id": 3, "category_id": 5, "bbox": [0, 0, 1, 1]},
            {"id": 4, "image_id": 3, "category_id": 2, "bbox": [1, 1, 1, 1]},
        ],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))

    dataset = read_coco(tmp_path)

    assert dataset.classes == ("y", "z")
    assert [i.file_name for i in dataset.images] == ["a.jpg", "b.jpg"]
    assert dataset.images[0].annotations == [
        BoundingBox(id="4", class_name="y", bbox=(1, 1, 1, 1)),
        BoundingBox(id="8", class_name="z", bbox=(0, 0, 1, 1)),
    ]


_VALID_IMAGE = {"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"images": [], "categories": []}', "annotations: missing"),
        (
            json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}).encode(),
            "images[0]: missing key 'file_name'",
        ),
        (
            json.dumps(
                {
                    "images": [_VALID_IMAGE],
                    "categories": [{"id": 1, "name": "c"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
                }
            ).encode(),
            "annotations[0]: missing key 'bbox'",
        ),
        (
            json.dumps(
                {
                    "images": [_VALID_IMAGE],
                    "categories": [{"id": 1, "name": "c"}],
                    "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": []}],
                }
            ).encode(),
            "image_id 2 is not an image's id",
        ),
        (
            json.dumps(
                {
                    "images": [_VALID_IMAGE],
                    "categories": [{"id": 1, "name": "c"}],
                    "annotations": [
                        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"counts": []}}
                    ],
                }
            ).encode(),
            "RLE",
        ),
        (
            json.dumps(
                {
                    "images": [{**_VALID_IMAGE, "width": 0}],
                    "categories": [],
                    "annotations": [],
                }
            ).encode(),
            "image id 1: not valid DM",
        ),
    ],
)
def test_malformed_annotations_raise_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "annotations.json"
    path.write_bytes(content)

    with pytest.raises(ConversionError) as raised:
        read_coco(tmp_path)

    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_a_missing_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot be read") as raised:
        read_coco(tmp_path)

    assert str(tmp_path / "annotations.json") in str(raised.value)
