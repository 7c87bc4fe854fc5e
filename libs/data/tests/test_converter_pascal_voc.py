"""Pascal VOC converter: supervision reads back the boxes written; DM → VOC → DM is lossless."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from runmesh.converters.base import ConversionError, ConversionIssue, Dataset
from runmesh.converters.pascal_voc import (
    PascalVocWriter,
    parse_pascal_voc_file,
    read_pascal_voc,
)
from runmesh.dm import BoundingBox, Classification, DMImage, Keypoints, Polygon

if TYPE_CHECKING:
    from supervision import DetectionDataset

CLASSES = ("cat", "R&D <lab>", "dog")

IMAGES = [
    DMImage(
        file_name="street.jpg",
        width=64,
        height=48,
        annotations=[
            BoundingBox(id="b1", class_name="cat", bbox=(0, 0, 10, 8)),
            BoundingBox(
                id="b2",
                class_name="dog",
                bbox=(2.3, 4.75, 20.125, 10.5),
                attributes={
                    "truncated": True,
                    "difficult": 1,
                    "pose": "Left",
                    "occluded": False,
                    "score": 0.875,
                    "count": 3,
                    "note": "a & <b> ]]>\r\n\tc",
                },
            ),
            Polygon(id="p1", class_name="cat", points=[(1, 1), (9, 1), (5, 7)]),
            Keypoints(id="k1", class_name="dog", points=[(3, 4, 2), (5, 6, 1)]),
            BoundingBox(id="b3", class_name="bird", bbox=(1, 1, 5, 5)),
        ],
    ),
    DMImage(
        file_name="office.png",
        width=40,
        height=30,
        annotations=[
            BoundingBox(
                id="lab & <1>",
                class_name="R&D <lab>",
                bbox=(10.1, 3.3, 12.7, 9.9),
                attributes={"pose": "Unspecified", "difficult": False, "": ""},
            ),
            Classification(id="c1", class_name="cat"),
            BoundingBox(id="b2", class_name="cat", bbox=(1 / 3, 2 / 3, 7.1, 5.9)),
        ],
    ),
    DMImage(file_name="empty.jpg", width=16, height=16),
]


def held_boxes(image: DMImage) -> list[BoundingBox]:
    """What Pascal VOC holds of `image`: its boxes of the label schema's classes."""
    return [a for a in image.annotations if isinstance(a, BoundingBox) and a.class_name in CLASSES]


def held(image: DMImage) -> DMImage:
    return image.model_copy(update={"annotations": held_boxes(image)})


def write(root: Path, images: list[DMImage]) -> tuple[list[ConversionIssue], list[str]]:
    """Write `images` (with real image files where the layout puts them) under `root`."""
    writer = PascalVocWriter(root, CLASSES)
    issues: list[ConversionIssue] = []
    for image in images:
        path = root / writer.image_path(image.file_name)
        Image.new("RGB", (image.width, image.height), (200, 120, 40)).save(path)
        issues += writer.add(image)
    return issues, writer.close()


def load_with_supervision(root: Path) -> DetectionDataset:
    with warnings.catch_warnings():
        # Without opencv-python, supervision warns once at import that it uses its NumPy
        # fallback, which reads images with Pillow: all these tests need.
        warnings.filterwarnings(
            "ignore", message=r"OpenCV \(`opencv-python`\) is not installed", category=UserWarning
        )
        import supervision

    return supervision.DetectionDataset.from_pascal_voc(
        images_directory_path=str(root / "JPEGImages"),
        annotations_directory_path=str(root / "Annotations"),
    )


def test_supervision_loads_the_boxes_and_class_names(tmp_path: Path) -> None:
    write(tmp_path, IMAGES)

    dataset = load_with_supervision(tmp_path)

    loaded = {Path(path).name: detections for path, detections in dataset.annotations.items()}
    assert sorted(loaded) == sorted(image.file_name for image in IMAGES)
    for image in IMAGES:
        boxes = held_boxes(image)
        detections = loaded[image.file_name]
        assert detections.class_id is not None
        names = [dataset.classes[class_id] for class_id in detections.class_id]
        assert names == [box.class_name for box in boxes]
        expected = np.array(
            [[x, y, x + w, y + h] for x, y, w, h in (box.bbox for box in boxes)], dtype=np.float64
        ).reshape(-1, 4)
        # supervision holds boxes as float32, hence a relative tolerance
        np.testing.assert_allclose(detections.xyxy, expected, rtol=1e-6, atol=0)


def test_reading_back_gives_the_boxes_ids_and_attributes(tmp_path: Path) -> None:
    write(tmp_path, IMAGES)

    dataset = read_pascal_voc(tmp_path)

    expected = sorted((held(image) for image in IMAGES), key=lambda image: image.file_name)
    assert dataset == Dataset(classes=CLASSES, images=expected)


def test_what_voc_cannot_hold_comes_back_as_issues(tmp_path: Path) -> None:
    issues, _ = write(tmp_path, IMAGES)

    by_id = {(issue.image, issue.annotation_id): issue.reason for issue in issues}
    assert set(by_id) == {
        ("street.jpg", "p1"),
        ("street.jpg", "k1"),
        ("street.jpg", "b3"),
        ("office.png", "c1"),
    }
    assert "polygon" in by_id["street.jpg", "p1"]
    assert "keypoints" in by_id["street.jpg", "k1"]
    assert "'bird'" in by_id["street.jpg", "b3"]
    assert "classification" in by_id["office.png", "c1"]


def test_the_files_follow_the_voc_layout_and_devkit_coordinates(tmp_path: Path) -> None:
    _, files = write(tmp_path, IMAGES)

    assert files == [
        "Annotations/street.xml",
        "Annotations/office.xml",
        "Annotations/empty.xml",
        "labels.txt",
        "ImageSets/Main/default.txt",
    ]
    assert (tmp_path / "labels.txt").read_text() == "cat\nR&D <lab>\ndog\n"
    assert (tmp_path / "ImageSets/Main/default.txt").read_text() == "street\noffice\nempty\n"
    street = (tmp_path / "Annotations/street.xml").read_text()
    # 1-based inclusive minima, maxima on the far edge; whole numbers as integers
    assert "<xmin>1</xmin>" in street
    assert "<xmax>10</xmax>" in street
    assert "<xmin>3.3</xmin>" in street
    assert "<ymax>15.25</ymax>" in street
    assert "<truncated>1</truncated>" in street
    assert "<difficult>1</difficult>" in street
    assert "<pose>Left</pose>" in street
    assert "a &amp; &lt;b&gt; ]]&gt;&#13;" in street
    office = (tmp_path / "Annotations/office.xml").read_text()
    assert "<name>R&amp;D &lt;lab&gt;</name>" in office


@pytest.mark.parametrize(
    "bbox",
    [
        (0.1, 0.2, 1.1, 1.0000001),
        (1e-7, 123456.789, 1e20, 2.5e-3 + 1),
        (-0.5, -3.25, 1, 1),
        (5e-324, 1.7976931348623157e308, 1.5, 9007199254740993.0),
    ],
)
def test_awkward_floats_round_trip_exactly(tmp_path: Path, bbox: tuple[float, ...]) -> None:
    image = DMImage(
        file_name="a.jpg",
        width=10,
        height=10,
        annotations=[BoundingBox(id="1", class_name="cat", bbox=bbox)],
    )
    writer = PascalVocWriter(tmp_path, CLASSES)
    assert writer.add(image) == []
    writer.close()

    assert read_pascal_voc(tmp_path).images == [image]


def test_boxes_under_a_pixel_and_unwritable_text_are_issues(tmp_path: Path) -> None:
    image = DMImage(
        file_name="a.jpg",
        width=10,
        height=10,
        annotations=[
            BoundingBox(id="thin", class_name="cat", bbox=(1, 1, 0.5, 4)),
            BoundingBox(id="flat", class_name="cat", bbox=(1, 1, 4, 0)),
            BoundingBox(id="bell", class_name="cat", bbox=(1, 1, 4, 4), attributes={"k": "\x07"}),
            BoundingBox(id="ok", class_name="cat", bbox=(1, 1, 1, 1)),
        ],
    )
    writer = PascalVocWriter(tmp_path, CLASSES)

    issues = writer.add(image)
    writer.close()

    assert [issue.annotation_id for issue in issues] == ["thin", "flat", "bell"]
    assert "one pixel" in issues[0].reason
    assert "XML cannot hold" in issues[2].reason
    assert [a.id for a in read_pascal_voc(tmp_path).images[0].annotations] == ["ok"]


def test_two_images_with_one_stem_are_refused_naming_both(tmp_path: Path) -> None:
    writer = PascalVocWriter(tmp_path, CLASSES)
    writer.add(DMImage(file_name="frame.jpg", width=4, height=4))

    with pytest.raises(ValueError, match=r"'frame\.jpg' and 'Frame\.png'"):
        writer.add(DMImage(file_name="Frame.png", width=4, height=4))


@pytest.mark.parametrize("file_name", ["../escape.jpg", "sub/a.jpg", "sub\\a.jpg", ".."])
def test_file_names_leaving_the_flat_layout_are_refused(tmp_path: Path, file_name: str) -> None:
    writer = PascalVocWriter(tmp_path, CLASSES)

    with pytest.raises(ValueError, match="plain file name"):
        writer.image_path(file_name)
    with pytest.raises(ValueError, match="plain file name"):
        writer.add(DMImage(file_name=file_name, width=4, height=4))


def test_a_class_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"labels\.txt"):
        PascalVocWriter(tmp_path, ["cat\ndog"])


def test_a_voc_file_from_another_tool_is_read(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/2007_000027.xml").write_text(
        """<annotation>
            <folder>VOC2012</folder>
            <filename>2007_000027.jpg</filename>
            <size><width>486</width><height>500</height><depth>3</depth></size>
            <object>
                <name>person</name><pose>Frontal</pose>
                <truncated>1</truncated><difficult>0</difficult>
                <bndbox><xmin>174</xmin><ymin>101</ymin><xmax>349</xmax><ymax>351</ymax></bndbox>
                <attributes>
                    <attribute><name>occluded</name><value>yes</value></attribute>
                </attributes>
            </object>
            <object>
                <name>car</name><pose>Unspecified</pose>
                <truncated>0</truncated><difficult>1</difficult>
                <bndbox><xmin>1.5</xmin><ymin>2</ymin><xmax>10.5</xmax><ymax>20</ymax></bndbox>
            </object>
        </annotation>"""
    )

    dataset = read_pascal_voc(tmp_path)

    assert dataset.classes == ("car", "person")
    assert dataset.images == [
        DMImage(
            file_name="2007_000027.jpg",
            width=486,
            height=500,
            annotations=[
                BoundingBox(
                    id="0",
                    class_name="person",
                    bbox=(173, 100, 176, 251),
                    attributes={"occluded": "yes", "pose": "Frontal", "truncated": True},
                ),
                BoundingBox(
                    id="1", class_name="car", bbox=(0.5, 1, 10, 19), attributes={"difficult": True}
                ),
            ],
        )
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><filename>a.jpg</filename>", "not well-formed XML"),
        ("<voc/>", "not <annotation>"),
        ("<annotation><filename>a.jpg</filename></annotation>", "missing <size>"),
        (
            "<annotation><filename>a.jpg</filename><size><width>4</width>"
            "<height>x</height></size></annotation>",
            "not an integer",
        ),
        (
            "<annotation><filename>a.jpg</filename><size><width>4</width><height>4</height>"
            "</size><object><name>cat</name></object></annotation>",
            "missing <bndbox>",
        ),
        (
            "<annotation><filename>a.jpg</filename><size><width>4</width><height>4</height>"
            "</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>nan</xmax><ymax>2</ymax></bndbox></object></annotation>",
            "not a finite number",
        ),
        (
            "<annotation><filename>a.jpg</filename><size><width>4</width><height>4</height>"
            "</size><object><name>cat</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
            "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>",
            "not valid DM",
        ),
        (
            "<annotation><filename>a.jpg</filename><size><width>4</width><height>4</height>"
            "</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>2</xmax><ymax>2</ymax></bndbox><dm_id>1</dm_id><attributes><attribute>"
            '<name>n</name><value type="int">x</value></attribute></attributes></object>'
            "</annotation>",
            "is not a int value",
        ),
        (
            '<!DOCTYPE a [<!ENTITY e "x">]><annotation><filename>&e;</filename></annotation>',
            "entity declarations",
        ),
    ],
)
def test_a_malformed_file_is_a_conversion_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    write(tmp_path, IMAGES[:1])
    bad = tmp_path / "Annotations/broken.xml"
    bad.write_text(text)

    with pytest.raises(ConversionError, match=message) as caught:
        read_pascal_voc(tmp_path)
    assert str(bad) in str(caught.value)


_ENTITY_DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE annotation [<!ENTITY e "injected">]>'
    "<annotation><filename>&e;.jpg</filename><size><width>4</width><height>4</height></size>"
    "</annotation>"
)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_dtd_is_refused_by_the_parser_whatever_the_encoding(
    tmp_path: Path, encoding: str
) -> None:
    data = _ENTITY_DOCUMENT.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # with its byte order mark, as editors write it
    assert b"<!ENTITY" not in data  # what the old byte search looked for

    with pytest.raises(ConversionError, match="DTDs and XML entity declarations"):
        parse_pascal_voc_file(data, "u16.xml")

    write(tmp_path, IMAGES[:1])
    (tmp_path / "Annotations/u16.xml").write_bytes(data)
    with pytest.raises(ConversionError, match="DTDs and XML entity declarations"):
        read_pascal_voc(tmp_path)


def test_a_dtd_without_entities_is_refused_too() -> None:
    data = b'<!DOCTYPE annotation SYSTEM "file:///etc/passwd"><annotation/>'
    with pytest.raises(ConversionError, match="DTDs"):
        parse_pascal_voc_file(data)
