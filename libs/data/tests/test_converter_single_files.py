"""Single-file parsers (one annotation file per data unit, as to_task reads them) and format
detection: what each format's writer wrote for one image parses back to the same DM."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from runmesh.converters.base import ConversionError
from runmesh.converters.coco import CocoWriter, parse_coco_file
from runmesh.converters.dm_json import (
    DmJsonWriter,
    detect_annotation_format,
    parse_dm_file,
)
from runmesh.converters.pascal_voc import PascalVocWriter, parse_pascal_voc_file
from runmesh.converters.yolo import YoloWriter, parse_yolo_file
from runmesh.dm import BoundingBox, DMImage

CLASSES = ("cat", "dog", "person")
IMAGE = DMImage(
    file_name="street.png",
    width=64,
    height=48,
    annotations=[
        BoundingBox(id="1", class_name="cat", bbox=(1.5, 2.25, 10.0, 7.5)),
        BoundingBox(id="2", class_name="person", bbox=(20.125, 3.0, 12.5, 30.0)),
    ],
)


def boxes(image: DMImage) -> list[tuple[str, tuple[float, ...]]]:
    return [(a.class_name, tuple(a.bbox)) for a in image.annotations if a.type == "bounding_box"]


def written(writer_cls: type, tmp_path: Path) -> bytes:
    """The one annotation file a writer produces for IMAGE."""
    writer = writer_cls(tmp_path, CLASSES)
    writer.outlet = []
    assert writer.add(IMAGE) == []
    files = writer.close()
    if writer.outlet:
        ((_, data),) = writer.outlet
        return bytes(data)
    return (tmp_path / files[0]).read_bytes()


def assert_same_boxes(image: DMImage) -> None:
    assert [name for name, _ in boxes(image)] == [name for name, _ in boxes(IMAGE)]
    for (_, got), (_, want) in zip(boxes(image), boxes(IMAGE), strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_dm_file_round_trips(tmp_path: Path) -> None:
    data = written(DmJsonWriter, tmp_path)
    assert detect_annotation_format(data, "street.json") == "dm"
    assert parse_dm_file(data, "street.json") == IMAGE


def test_coco_file_round_trips_with_or_without_its_images_entry(tmp_path: Path) -> None:
    data = written(CocoWriter, tmp_path)
    assert detect_annotation_format(data, "street.json") == "coco"
    image = parse_coco_file(data, "street.json", None, None)
    assert (image.file_name, image.width, image.height) == ("street.png", 64, 48)
    assert_same_boxes(image)

    document = orjson.loads(data)
    del document["images"]
    bare = parse_coco_file(orjson.dumps(document), "street.json", 64, 48)
    assert (bare.width, bare.height) == (64, 48)
    assert_same_boxes(bare)
    with pytest.raises(ConversionError, match=r"street\.json: no `images` entry"):
        parse_coco_file(orjson.dumps(document), "street.json", None, None)


def test_coco_file_with_two_images_is_refused(tmp_path: Path) -> None:
    document = orjson.loads(written(CocoWriter, tmp_path))
    document["images"].append({"id": 2, "file_name": "b.png", "width": 4, "height": 4})
    with pytest.raises(ConversionError, match=r"u7\.json: holds 2 images"):
        parse_coco_file(orjson.dumps(document), "u7.json", None, None)


def test_yolo_file_round_trips_with_the_image_size(tmp_path: Path) -> None:
    data = written(YoloWriter, tmp_path)
    assert detect_annotation_format(data, "street.txt") == "yolo"
    assert detect_annotation_format(data, "street") == "yolo"
    image = parse_yolo_file(data, CLASSES, "street.png", 64, 48)
    assert image.file_name == "street.png"
    assert_same_boxes(image)
    assert parse_yolo_file(b"", CLASSES, "empty.png", 8, 8).annotations == []


def test_pascal_voc_file_round_trips(tmp_path: Path) -> None:
    data = written(PascalVocWriter, tmp_path)
    assert detect_annotation_format(data, "street.xml") == "pascal_voc"
    assert detect_annotation_format(data, "street") == "pascal_voc"
    image = parse_pascal_voc_file(data, "street.xml")
    assert (image.file_name, image.width, image.height) == ("street.png", 64, 48)
    assert_same_boxes(image)
    assert [a.id for a in image.annotations] == ["1", "2"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_dm_file(b"{not json", "a.json"), r"a\.json: not a DM document"),
        (lambda: parse_dm_file(b'{"images": []}', "a.json"), r"a\.json: holds 0 images"),
        (lambda: parse_coco_file(b"[1]", "b.json", 1, 1), r"b\.json: top level"),
        (lambda: parse_coco_file(b"{", "b.json", 1, 1), r"b\.json: not valid JSON"),
        (
            lambda: parse_yolo_file(b"7 0.5 0.5 0.1 0.1\n", CLASSES, "c.png", 8, 8),
            r"c\.png, line 1: class id 7 is not in 0\.\.2",
        ),
        (
            lambda: parse_yolo_file(b"0 0.5 x 0.1 0.1\n", CLASSES, "c.png", 8, 8),
            r"c\.png, line 1: a coordinate is not a number",
        ),
        (lambda: parse_pascal_voc_file(b"<annotation>", "d.xml"), r"d\.xml: not well-formed"),
        (lambda: parse_pascal_voc_file(b"<root/>", "d.xml"), r"d\.xml: the root element"),
        (lambda: detect_annotation_format(b"{oops", "e.json"), r"e\.json: not valid JSON"),
        (lambda: detect_annotation_format(b"[]", "e.json"), r"e\.json: a JSON document"),
        (lambda: detect_annotation_format(b"\x89PNG", "e.png"), r"e\.png: cannot tell"),
    ],
)
def test_errors_name_the_file(call: object, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        call()  # type: ignore[operator]
