"""YOLO writer and reader: supervision reads what the writer wrote, DM round-trips, issues."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from PIL import Image

from runmesh.converters.base import ConversionError, ConversionIssue, Dataset
from runmesh.converters.yolo import YoloWriter, read_yolo
from runmesh.dm import (
    BoundingBox,
    Classification,
    DMImage,
    Keypoints,
    Polygon,
)

if TYPE_CHECKING:
    from supervision import DetectionDataset

CLASSES = ("car", "person", "road sign")

# Sizes differ per image so that a reader normalising by the wrong image's size fails.
IMAGES = [
    DMImage(
        file_name="a_street.png",
        width=64,
        height=48,
        annotations=[
            BoundingBox(id="b1", class_name="car", bbox=(10.123456789, 12.5, 20.25, 9.75)),
            BoundingBox(
                id="b2",
                class_name="person",
                bbox=(0.0, 0.0, 7.3333333333, 48.0),
                attributes={"occluded": True, "score": 0.9},
            ),
            Polygon(
                id="p1",
                class_name="road sign",
                points=[(30.5, 5.25), (50.125, 6.0), (45.0, 30.75), (31.0, 28.0)],
            ),
            Keypoints(id="k1", class_name="person", points=[(5.0, 6.0, 2), (7.0, 8.0, 1)]),
            BoundingBox(id="u1", class_name="ghost", bbox=(1.0, 1.0, 2.0, 2.0)),
        ],
    ),
    DMImage(
        file_name="b_field.png",
        width=100,
        height=80,
        annotations=[
            Classification(id="c1", class_name="road sign"),
            Polygon(
                id="p2",
                class_name="car",
                points=[(11.1, 22.2), (88.8, 23.3), (64.0, 79.5)],
                attributes={"colour": "red"},
            ),
            BoundingBox(id="b3", class_name="road sign", bbox=(64.5, 40.25, 35.5, 39.75)),
        ],
    ),
    # Nothing YOLO can hold: still gets its (empty) label file.
    DMImage(file_name="c_empty.png", width=33, height=77),
]


def write_dataset(root: Path, images: list[DMImage]) -> tuple[list[ConversionIssue], list[str]]:
    """Write `images` with real PNGs of their sizes, as the exporter copies the originals."""
    writer = YoloWriter(root, CLASSES)
    issues: list[ConversionIssue] = []
    for image in images:
        target = root / writer.image_path(image.file_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (image.width, image.height), (40, 90, 160)).save(target)
        issues += writer.add(image)
    return issues, writer.close()


def held_shapes(image: DMImage) -> list[BoundingBox | Polygon]:
    """The image's shapes as YOLO holds them: known boxes and polygons, renumbered, bare."""
    shapes = [
        a
        for a in image.annotations
        if isinstance(a, BoundingBox | Polygon) and a.class_name in CLASSES
    ]
    return [
        a.model_copy(update={"id": str(number), "attributes": {}})
        for number, a in enumerate(shapes, start=1)
    ]


def held(image: DMImage) -> DMImage:
    """The image as YOLO holds it."""
    return image.model_copy(update={"annotations": held_shapes(image)})


def coordinates(annotation: BoundingBox | Polygon) -> list[float]:
    if isinstance(annotation, BoundingBox):
        return list(annotation.bbox)
    return [value for point in annotation.points for value in point]


def xyxy(annotation: BoundingBox | Polygon) -> list[float]:
    if isinstance(annotation, BoundingBox):
        x, y, w, h = annotation.bbox
        return [x, y, x + w, y + h]
    xs = [x for x, _ in annotation.points]
    ys = [y for _, y in annotation.points]
    return [min(xs), min(ys), max(xs), max(ys)]


def assert_same_dm(actual: list[DMImage], expected: list[DMImage]) -> None:
    assert [i.file_name for i in actual] == [i.file_name for i in expected]
    for got, want in zip(actual, expected, strict=True):
        assert (got.width, got.height) == (want.width, want.height)
        assert [(a.id, a.type, a.class_name, a.attributes) for a in got.annotations] == [
            (a.id, a.type, a.class_name, a.attributes) for a in want.annotations
        ]
        for a, b in zip(got.annotations, want.annotations, strict=True):
            assert isinstance(a, BoundingBox | Polygon)
            assert isinstance(b, BoundingBox | Polygon)
            assert coordinates(a) == pytest.approx(coordinates(b), rel=1e-6), a.id


def load_with_supervision(root: Path) -> DetectionDataset:
    with warnings.catch_warnings():
        # Without opencv-python, supervision warns once at import that it uses its NumPy
        # fallback (Pillow reads the image sizes): all these tests need.
        warnings.filterwarnings(
            "ignore", message=r"OpenCV \(`opencv-python`\) is not installed", category=UserWarning
        )
        import supervision

    return supervision.DetectionDataset.from_yolo(
        images_directory_path=str(root / "images"),
        annotations_directory_path=str(root / "labels"),
        data_yaml_path=str(root / "data.yaml"),
    )


def test_the_layout_has_a_label_file_per_image_classes_and_data_yaml(tmp_path: Path) -> None:
    _, written = write_dataset(tmp_path, IMAGES)

    assert written == [
        "labels/a_street.txt",
        "labels/b_field.txt",
        "labels/c_empty.txt",
        "classes.txt",
        "data.yaml",
    ]
    assert (tmp_path / "labels" / "c_empty.txt").read_text() == ""
    assert (tmp_path / "classes.txt").read_text() == "car\nperson\nroad sign\n"
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    # No `path`: Ultralytics then resolves train/val against the YAML's own folder.
    assert data == {"train": "images", "val": "images", "nc": 3, "names": list(CLASSES)}
    lines = (tmp_path / "labels" / "a_street.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2"]
    assert [len(line.split()) for line in lines] == [5, 5, 9]


def test_supervision_reads_the_same_boxes_and_class_names(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)

    dataset = load_with_supervision(tmp_path)

    assert dataset.classes == list(CLASSES)
    assert sorted(Path(p).name for p in dataset.image_paths) == [i.file_name for i in IMAGES]
    for image in IMAGES:
        detections = dataset.annotations[str(tmp_path / "images" / image.file_name)]
        expected = held_shapes(image)
        assert len(detections) == len(expected)
        assert detections.class_id is not None
        assert [dataset.classes[c] for c in detections.class_id] == [a.class_name for a in expected]
        # supervision parses labels as float32: allow its resolution at the image's scale.
        float32_slack = 4 * float(np.finfo(np.float32).eps) * max(image.width, image.height)
        for row, annotation in zip(detections.xyxy, expected, strict=True):
            assert row.tolist() == pytest.approx(xyxy(annotation), rel=1e-6, abs=float32_slack)
        if any(isinstance(a, Polygon) for a in expected):
            # A polygon line makes supervision rasterise masks for the whole image.
            assert detections.mask is not None
            for mask, annotation in zip(detections.mask, expected, strict=True):
                assert mask.shape == (image.height, image.width)
                assert mask.any(), annotation.id


def test_read_yolo_gives_back_what_yolo_holds(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)

    dataset = read_yolo(tmp_path)  # sizes from the PNG headers

    assert dataset.classes == CLASSES
    assert_same_dm(dataset.images, [held(image) for image in IMAGES])


def test_read_yolo_takes_given_sizes_and_falls_back_to_data_yaml(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)
    (tmp_path / "classes.txt").unlink()
    for image in IMAGES:
        # Not images any more: the given sizes must be used, not the headers.
        (tmp_path / "images" / image.file_name).write_bytes(b"not a png")

    dataset = read_yolo(tmp_path, {i.file_name: (i.width, i.height) for i in IMAGES})

    assert dataset.classes == CLASSES
    assert_same_dm(dataset.images, [held(image) for image in IMAGES])


def test_read_yolo_reads_names_as_a_mapping(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES[:1])
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnames: {1: b, 0: a}\n")
    (tmp_path / "labels" / "a_street.txt").write_text("1 0.5 0.5 0.25 0.5\n")

    dataset = read_yolo(tmp_path)

    assert dataset == Dataset(
        classes=("a", "b"),
        images=[
            DMImage(
                file_name="a_street.png",
                width=64,
                height=48,
                annotations=[BoundingBox(id="1", class_name="b", bbox=(24.0, 12.0, 16.0, 24.0))],
            )
        ],
    )


def test_issues_name_what_yolo_cannot_hold(tmp_path: Path) -> None:
    issues, _ = write_dataset(tmp_path, IMAGES)

    reasons = {(i.image, i.annotation_id): i.reason for i in issues}
    assert set(reasons) == {
        ("a_street.png", "b2"),
        ("a_street.png", "k1"),
        ("a_street.png", "u1"),
        ("b_field.png", "c1"),
        ("b_field.png", "p2"),
    }
    assert len(issues) == len(reasons)
    assert "attributes" in reasons["a_street.png", "b2"]
    assert "['occluded', 'score']" in reasons["a_street.png", "b2"]
    assert "keypoints" in reasons["a_street.png", "k1"]
    assert "'ghost' is not in the label schema" in reasons["a_street.png", "u1"]
    assert "classification" in reasons["b_field.png", "c1"]
    assert "['colour']" in reasons["b_field.png", "p2"]


def test_shapes_past_the_image_are_clipped_and_reported(tmp_path: Path) -> None:
    image = DMImage(
        file_name="edge.png",
        width=50,
        height=40,
        annotations=[
            BoundingBox(id="over", class_name="car", bbox=(-5.0, 30.0, 20.0, 20.0)),
            BoundingBox(id="out", class_name="car", bbox=(60.0, 1.0, 5.0, 5.0)),
            Polygon(id="poly", class_name="car", points=[(10.0, -2.0), (55.0, 10.0), (20, 20)]),
        ],
    )
    issues, _ = write_dataset(tmp_path, [image])

    reasons = {i.annotation_id: i.reason for i in issues}
    assert len(issues) == len(reasons) == 3
    assert "clipped" in reasons["over"]
    assert "clipped" in reasons["poly"]
    assert reasons["out"] == "the box lies outside the image; skipped"
    (read,) = read_yolo(tmp_path).images
    box, polygon = read.annotations
    assert isinstance(box, BoundingBox)
    assert isinstance(polygon, Polygon)
    assert coordinates(box) == pytest.approx([0.0, 30.0, 15.0, 10.0])
    assert coordinates(polygon) == pytest.approx([10.0, 0.0, 50.0, 10.0, 20.0, 20.0])


def test_images_sharing_a_stem_are_refused(tmp_path: Path) -> None:
    writer = YoloWriter(tmp_path, CLASSES)
    writer.add(DMImage(file_name="frame.jpg", width=10, height=10))

    with pytest.raises(ValueError, match=r"'frame\.jpg' and 'Frame\.png'"):
        writer.add(DMImage(file_name="Frame.png", width=10, height=10))


@pytest.mark.parametrize("name", ["sub/a.png", "..", "a\\b.png"])
def test_names_with_folders_are_refused(tmp_path: Path, name: str) -> None:
    writer = YoloWriter(tmp_path, CLASSES)

    with pytest.raises(ValueError, match="plain name"):
        writer.image_path(name)
    with pytest.raises(ValueError, match="plain name"):
        writer.add(DMImage(file_name=name, width=10, height=10))


def test_a_class_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line break"):
        YoloWriter(tmp_path, ["car", "two\nlines"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.1", "4 values"),
        ("0 0.5 0.5 0.1 0.1 0.9", "6 values"),
        ("0 0.1 0.1 0.2 0.1 0.2 0.2 0.3", "8 values"),
        ("car 0.5 0.5 0.1 0.1", "class id 'car' is not a whole number"),
        ("3 0.5 0.5 0.1 0.1", r"class id 3 is not in 0\.\.2"),
        ("0 0.5 half 0.1 0.1", "not a number"),
        ("0 0.5 nan 0.1 0.1", "finite"),
        ("0 0.5 0.5 -0.1 0.1", "negative"),
    ],
)
def test_a_malformed_label_line_names_its_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    write_dataset(tmp_path, IMAGES)
    label = tmp_path / "labels" / "b_field.txt"
    label.write_text(f"0 0.5 0.5 0.1 0.1\n\n{line}\n")

    with pytest.raises(ConversionError, match=message) as raised:
        read_yolo(tmp_path)

    assert f"{label}, line 3" in str(raised.value)


def test_a_label_file_without_its_image_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)
    (tmp_path / "images" / "b_field.png").unlink()

    with pytest.raises(ConversionError, match=r"b_field\.txt: no image"):
        read_yolo(tmp_path)


def test_an_unreadable_image_names_its_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)
    (tmp_path / "images" / "c_empty.png").write_bytes(b"not a png")

    with pytest.raises(ConversionError, match=r"c_empty\.png: cannot read the image's size"):
        read_yolo(tmp_path)


def test_a_dataset_without_classes_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, IMAGES)
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "data.yaml").unlink()

    with pytest.raises(ConversionError, match="no classes"):
        read_yolo(tmp_path)


def test_an_empty_dataset_round_trips(tmp_path: Path) -> None:
    issues, written = write_dataset(tmp_path, [])

    assert (issues, written) == ([], ["classes.txt", "data.yaml"])
    assert read_yolo(tmp_path) == Dataset(classes=CLASSES)
    shutil.rmtree(tmp_path / "labels")
    with pytest.raises(ConversionError, match="no labels folder"):
        read_yolo(tmp_path)
