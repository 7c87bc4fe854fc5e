"""DM as files: one `json/<stem>.json` per image (a DMData of that image), images beside.

The Synapse exporter's own layout (`json/` + originals), with one fix: the originals folder
is `original_files/`, the name its converters read (the SDK writes `origin_files/`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import orjson
from pydantic import ValidationError

from runmesh.converters.base import ConversionError, ConversionIssue, Dataset, DatasetWriter
from runmesh.dm import DMData, DMImage, class_names, parse_dm


class DmJsonWriter(DatasetWriter):
    """Writes each image as `json/<stem>.json`; DM holds everything, so no issue is raised
    but for a class outside the label schema."""

    format = "dm"

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        super().__init__(root, classes)
        self._json_dir = root / "json"
        self._json_dir.mkdir(parents=True, exist_ok=True)
        self._written: list[str] = []
        self._stems: dict[str, str] = {}

    def image_path(self, file_name: str) -> str:
        """Originals go to `original_files/<file_name>`."""
        return f"original_files/{file_name}"

    def add(self, image: DMImage) -> list[ConversionIssue]:
        """Write the image's annotations (those of known classes) as one DM document."""
        stem = PurePosixPath(image.file_name).stem
        other = self._stems.setdefault(stem, image.file_name)
        if other != image.file_name:
            raise ValueError(f"{image.file_name!r} and {other!r} would share json/{stem}.json")
        issues: list[ConversionIssue] = []
        kept = []
        for annotation in image.annotations:
            if annotation.class_name in self.class_ids:
                kept.append(annotation)
            else:
                issues.append(self.unknown_class(image, annotation.id, annotation.class_name))
        if issues:
            image = image.model_copy(update={"annotations": kept})
        relative = f"json/{stem}.json"
        self.emit(relative, DMData(images=[image]).model_dump_json().encode())
        self._written.append(relative)
        return issues

    def close(self) -> list[str]:
        """Nothing spans the dataset: the per-image files are all there is."""
        return list(self._written)


def read_dm_json(root: Path) -> Dataset:
    """The images of `root/json/*.json` (sorted by name); classes are the names they use."""
    images: list[DMImage] = []
    for path in sorted((root / "json").glob("*.json")):
        try:
            images.extend(parse_dm(path.read_bytes()).images)
        except (ValidationError, orjson.JSONDecodeError, OSError) as exc:
            raise ConversionError(f"{path}: not a DM document: {exc}") from exc
    return Dataset(classes=tuple(class_names(images)), images=images)


# -- single files (to_task: one annotation file per data unit) --------------------------------

ANNOTATION_FORMATS = ("dm", "coco", "yolo", "pascal_voc")
"""The formats `detect_annotation_format` tells apart (the to_task `annotation_format`s)."""


def parse_dm_file(data: bytes, file_name: str = "annotation.json") -> DMImage:
    """The one image of a DM document (a DMData) read from `file_name`'s bytes.

    Raises `ConversionError` naming `file_name` when the bytes are not DM or the document
    holds other than exactly one image.
    """
    try:
        document = parse_dm(data)
    except (ValidationError, ValueError) as exc:
        raise ConversionError(f"{file_name}: not a DM document: {exc}") from exc
    if len(document.images) != 1:
        raise ConversionError(
            f"{file_name}: holds {len(document.images)} images; a data unit's DM file holds one"
        )
    return document.images[0]


def detect_annotation_format(data: bytes, file_name: str) -> str:
    """Which of `ANNOTATION_FORMATS` one annotation file is in, by extension and content.

    `.xml` (or content starting with `<`) is Pascal VOC and `.txt` is YOLO; a JSON object
    with `categories` and `annotations` is COCO, one with `images` (or `dm_version`) is DM.
    Raises `ConversionError` naming the file when it is none of them.
    """
    suffix = PurePosixPath(file_name).suffix.lower()
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if suffix == ".xml" or (suffix != ".json" and head == b"<"):
        return "pascal_voc"
    if suffix == ".txt":
        return "yolo"
    if suffix == ".json" or head == b"{":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ConversionError(f"{file_name}: not valid JSON: {exc}") from exc
        if isinstance(document, dict):
            if "categories" in document and "annotations" in document:
                return "coco"
            if "dm_version" in document or "images" in document:
                return "dm"
        raise ConversionError(
            f"{file_name}: a JSON document that is neither COCO (categories, annotations) "
            "nor DM (images)"
        )
    if head.isdigit() or not head:
        # Label lines start with a class id; an empty file is an image without labels.
        return "yolo"
    raise ConversionError(
        f"{file_name}: cannot tell its format (expected .json, .xml or .txt: DM, COCO, "
        "Pascal VOC or YOLO)"
    )
