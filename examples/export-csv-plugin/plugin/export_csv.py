"""An exporter that writes bounding boxes as CSV rows (the BaseExporter hooks at work)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from runmesh.converters import ConversionIssue, DatasetWriter
from runmesh.dm import BoundingBox, DMImage
from runmesh.export.context import ExportContext, ItemData
from runmesh.export.exporter import BaseExporter


class CsvWriter(DatasetWriter):
    """`annotations.csv`: image, class, x, y, width, height; one row per box."""

    format = "csv"

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        super().__init__(root, classes)
        self._file = (root / "annotations.csv").open("w", newline="", encoding="utf-8")
        self._rows = csv.writer(self._file)
        self._rows.writerow(["image", "class", "x", "y", "width", "height"])
        self.boxes = 0

    def image_path(self, file_name: str) -> str:
        """Images next to the CSV, under images/."""
        return f"images/{file_name}"

    def add(self, image: DMImage) -> list[ConversionIssue]:
        """One row per box; any other shape is reported as not held by CSV."""
        issues = []
        for annotation in image.annotations:
            if isinstance(annotation, BoundingBox):
                self._rows.writerow([image.file_name, annotation.class_name, *annotation.bbox])
                self.boxes += 1
            else:
                issues.append(
                    ConversionIssue(
                        image.file_name, annotation.id, f"CSV holds no {annotation.type}"
                    )
                )
        return issues

    def close(self) -> list[str]:
        """Flush the CSV."""
        self._file.close()
        return ["annotations.csv"]


class CsvExport(BaseExporter):
    """The built-in export, with three hooks overridden."""

    def make_writer(self, root: Path, classes: list[str]) -> DatasetWriter:
        """CSV instead of `extra_params.output_format`."""
        self._writer = CsvWriter(root, classes)
        return self._writer

    def after_convert(self, data: ItemData) -> ItemData | None:
        """Skip items that hold no bounding box at all."""
        images = data["data"].get("images", [])
        has_box = any(
            a.get("type") == "bounding_box"
            for image in images
            for a in image.get("annotations", [])
        )
        return data if has_box else None

    def additional_file_saving(self, ctx: ExportContext) -> None:
        """A one-line summary beside the CSV."""
        (ctx.staging / "summary.txt").write_text(f"{self._writer.boxes} boxes\n", encoding="utf-8")
