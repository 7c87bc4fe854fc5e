"""What every annotation format converter implements: a streaming writer and a reader of DM.

A writer takes DM images one at a time and keeps its memory flat in their number (a format
with one file for the whole dataset spools to disk); whatever a format cannot hold comes back
as `ConversionIssue`s, never silently dropped. A reader turns a dataset directory back into
DM, so that DM → format → DM round-trips can be checked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from runmesh.dm import DMImage


class ConversionError(ValueError):
    """A dataset directory that cannot be read as its format (names the file at fault)."""


@dataclass(slots=True, frozen=True)
class ConversionIssue:
    """Something of an image that the format could not hold, and so did not write."""

    image: str  # the image's file name
    annotation_id: str | None  # None: about the image as a whole
    reason: str


@dataclass(slots=True, frozen=True)
class Dataset:
    """A dataset read back from a format: its classes in id order and its images."""

    classes: tuple[str, ...]
    images: list[DMImage] = field(default_factory=list)


class DatasetWriter(ABC):
    """Writes one dataset in a format under `root`; `classes` in id order (the label schema).

    `add` is called once per image and writes its per-image files through `emit`; `close`
    finishes the files that cover the whole dataset and returns every file written (or
    emitted), relative to `root`. Writers do blocking file I/O: callers
    on an event loop run them in a thread.
    """

    format: ClassVar[str]
    """The `output_format` name: dm, coco, yolo or pascal_voc."""

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        if len(set(classes)) != len(classes):
            raise ValueError("class names must be distinct")
        self.root = root
        self.classes = tuple(classes)
        self.class_ids = {name: index for index, name in enumerate(self.classes)}
        self.outlet: list[tuple[str, bytes]] | None = None
        """When a list: per-image files go there (relative path, bytes) instead of to disk,
        for a caller that stores them itself (the exporter ships them chunk by chunk)."""

    def emit(self, relative: str, data: bytes) -> None:
        """Write one per-image file under `root`, or hand it to `outlet` when one is set."""
        if self.outlet is not None:
            self.outlet.append((relative, data))
            return
        # A str path and one binary write: the files are many and small, so per-file
        # overhead is what a dataset spends.
        with open(f"{self.root}/{relative}", "wb") as out:
            out.write(data)

    @abstractmethod
    def image_path(self, file_name: str) -> str:
        """Where the format's layout puts the image `file_name`, relative to `root`."""

    @abstractmethod
    def add(self, image: DMImage) -> list[ConversionIssue]:
        """Write (or spool) one image's annotations; what could not be written is returned."""

    @abstractmethod
    def close(self) -> list[str]:
        """Finish the dataset; the relative paths of the annotation files written."""

    def unknown_class(self, image: DMImage, annotation_id: str, name: str) -> ConversionIssue:
        """The issue for an annotation whose class is not in the label schema."""
        return ConversionIssue(
            image.file_name, annotation_id, f"class {name!r} is not in the label schema"
        )
