"""DM as files: one `json/<stem>.json` per image (a DMData of that image), images beside.

The Synapse exporter's own layout (`json/` + originals), with one fix: the originals folder
is `original_files/`, the name its converters read (the SDK writes `origin_files/`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import orjson
from pydantic import ValidationError

from runmesh.common.converters.base import ConversionError, ConversionIssue, Dataset, DatasetWriter
from runmesh.common.dm import DMData, DMImage, class_names, parse_dm


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
