"""YOLO detection/segmentation datasets: a streaming writer from DM and a reader back to DM.

Layout under the dataset root, as Ultralytics and supervision read it:

    images/<file_name>     the images (copied there by the caller, see `image_path`)
    labels/<stem>.txt      one per image, empty when it has nothing YOLO can hold
    classes.txt            the class names, one a line, in id order
    data.yaml              train/val folders, nc and names for Ultralytics and supervision

A label line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 ...` (a polygon, YOLO's
segmentation line), every coordinate normalised by the image's width or height.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Final

import yaml
from PIL import Image
from pydantic import ValidationError

from runmesh.converters.base import (
    ConversionError,
    ConversionIssue,
    Dataset,
    DatasetWriter,
)
from runmesh.dm import BoundingBox, DMImage, Keypoints, Polygon

IMAGES_DIR: Final = "images"
LABELS_DIR: Final = "labels"
CLASSES_FILE: Final = "classes.txt"
DATA_YAML: Final = "data.yaml"

# The suffixes Ultralytics trains on (its IMG_FORMATS); supervision reads a subset of them.
IMAGE_SUFFIXES: Final = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
)


def _plain_name(file_name: str) -> str:
    # Both readers look for images directly in images/ and pair labels by stem; a name with a
    # folder in it would land where neither looks (or, with `..`, outside the dataset).
    if "/" in file_name or "\\" in file_name or file_name in {".", ".."}:
        raise ValueError(
            f"image file name {file_name!r} must be a plain name without folders for YOLO"
        )
    return file_name


def _stem(file_name: str) -> str:
    # os.path.splitext, as supervision and Ultralytics derive the label file's name.
    stem, dot, _ = file_name.rpartition(".")
    return stem if dot and stem else file_name


class YoloWriter(DatasetWriter):
    """Writes a YOLO detection/segmentation dataset (boxes and polygons) under `root`.

    Class ids are the positions in `classes`. Keypoints and classifications have no place in
    such a dataset, nor have attributes or DM ids: each loss is returned as an issue (the id's
    is inherent in the format and not reported). Shapes reaching past the image are clipped
    to it, since Ultralytics discards a label file with coordinates outside [0, 1].
    """

    format: ClassVar[str] = "yolo"

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        super().__init__(root, classes)
        for name in self.classes:
            # classes.txt holds one name a line; a line break would shift every later id.
            if "\n" in name or "\r" in name:
                raise ValueError(f"class name {name!r} has a line break, which YOLO cannot hold")
        self._labels_dir = str(root / LABELS_DIR)
        self._dirs_made = False
        # casefold: a dataset is often unpacked on a case-insensitive file system, where
        # a.txt and A.txt are one file (supervision's exporter checks the same way).
        self._stems: dict[str, str] = {}
        self._written: list[str] = []

    def _make_dirs(self) -> None:
        if not self._dirs_made:
            (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
            Path(self._labels_dir).mkdir(parents=True, exist_ok=True)
            self._dirs_made = True

    def image_path(self, file_name: str) -> str:
        """`images/<file_name>`; raises ValueError for a name with folders in it."""
        return f"{IMAGES_DIR}/{_plain_name(file_name)}"

    def add(self, image: DMImage) -> list[ConversionIssue]:
        """Write `labels/<stem>.txt` for one image; what YOLO cannot hold comes back.

        Raises ValueError when another image of this dataset has the same stem, since both
        would need the same label file.
        """
        file_name = _plain_name(image.file_name)
        stem = _stem(file_name)
        key = stem.casefold()
        other = self._stems.get(key)
        if other is not None:
            raise ValueError(
                f"images {other!r} and {file_name!r} would share the YOLO label file "
                f"{LABELS_DIR}/{stem}.txt; give them distinct names"
            )
        self._stems[key] = file_name
        self._make_dirs()

        width = image.width
        height = image.height
        class_ids = self.class_ids
        lines: list[str] = []
        issues: list[ConversionIssue] = []
        # Attribute access only, no model_dump: this loop runs once per annotation of a
        # dataset that may hold millions. Numbers are written with repr, the shortest text
        # that reads back as the same float, so a round trip loses only float rounding.
        for annotation in image.annotations:
            # `type(...) is`, not isinstance: pydantic's metaclass is an ABCMeta, whose
            # isinstance is several times slower, and DM's shape classes are never subclassed.
            kind = type(annotation)
            if kind is not BoundingBox and kind is not Polygon:
                what = "keypoints" if kind is Keypoints else "an image classification"
                issues.append(
                    ConversionIssue(
                        file_name,
                        annotation.id,
                        f"YOLO detection/segmentation datasets cannot hold {what}; skipped",
                    )
                )
                continue
            class_id = class_ids.get(annotation.class_name)
            if class_id is None:
                issues.append(self.unknown_class(image, annotation.id, annotation.class_name))
                continue
            if type(annotation) is BoundingBox:
                x, y, w, h = annotation.bbox
                x2 = x + w
                y2 = y + h
                if x < 0 or y < 0 or x2 > width or y2 > height:
                    x, y = max(x, 0.0), max(y, 0.0)
                    x2, y2 = min(x2, width), min(y2, height)
                    if x2 < x or y2 < y:
                        issues.append(
                            ConversionIssue(
                                file_name, annotation.id, "the box lies outside the image; skipped"
                            )
                        )
                        continue
                    w, h = x2 - x, y2 - y
                    issues.append(_clipped(file_name, annotation.id, "box"))
                lines.append(
                    f"{class_id} {(x + w / 2) / width!r} {(y + h / 2) / height!r} "
                    f"{w / width!r} {h / height!r}"
                )
            elif type(annotation) is Polygon:
                points = annotation.points
                if any(px < 0 or py < 0 or px > width or py > height for px, py in points):
                    points = [
                        (min(max(px, 0.0), width), min(max(py, 0.0), height)) for px, py in points
                    ]
                    issues.append(_clipped(file_name, annotation.id, "polygon"))
                coordinates = " ".join([f"{px / width!r} {py / height!r}" for px, py in points])
                lines.append(f"{class_id} {coordinates}")
            if annotation.attributes:
                issues.append(
                    ConversionIssue(
                        file_name,
                        annotation.id,
                        f"YOLO cannot hold attributes; dropped {sorted(annotation.attributes)}",
                    )
                )

        text = "\n".join(lines) + "\n" if lines else ""
        self.emit(f"{LABELS_DIR}/{stem}.txt", text.encode())
        self._written.append(f"{LABELS_DIR}/{stem}.txt")
        return issues

    def close(self) -> list[str]:
        """Write classes.txt and data.yaml; every annotation file written, relative to root."""
        self._make_dirs()
        names = list(self.classes)
        (self.root / CLASSES_FILE).write_text(
            "".join(f"{name}\n" for name in names), encoding="utf-8", newline="\n"
        )
        # No `path` key: Ultralytics resolves a relative `path` (even `.`) against the
        # working directory, and only an absent one against the YAML's own folder, which is
        # what keeps the dataset valid wherever it is unpacked. supervision ignores `path`.
        data = {"train": IMAGES_DIR, "val": IMAGES_DIR, "nc": len(names), "names": names}
        (self.root / DATA_YAML).write_text(
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
            newline="\n",
        )
        return [*self._written, CLASSES_FILE, DATA_YAML]


def _clipped(file_name: str, annotation_id: str, shape: str) -> ConversionIssue:
    return ConversionIssue(
        file_name,
        annotation_id,
        f"the {shape} reaches past the image; clipped to it, as YOLO coordinates lie in [0, 1]",
    )


def read_yolo(root: Path, image_sizes: Mapping[str, tuple[int, int]] | None = None) -> Dataset:
    """Read a YOLO detection/segmentation dataset under `root` back into DM.

    Classes come from classes.txt, else from data.yaml's `names`. Every image file directly
    in images/ (sorted by name) becomes a DMImage with the annotations of its
    `labels/<stem>.txt` (none when it has no label file); annotation ids are "1", "2", ... in
    line order. An image's (width, height) is taken from `image_sizes` by file name when it
    has one, else from the image file's header (no pixels are decoded). Raises
    ConversionError, naming the file and line, for anything that is not YOLO.
    """
    classes = _read_classes(root)
    images_dir = root / IMAGES_DIR
    labels_dir = root / LABELS_DIR
    if not images_dir.is_dir():
        raise ConversionError(f"{images_dir}: no images folder; not a YOLO dataset")
    if not labels_dir.is_dir():
        raise ConversionError(f"{labels_dir}: no labels folder; not a YOLO dataset")

    image_files: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir(), key=lambda p: p.name):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        stem = _stem(path.name)
        if stem in image_files:
            raise ConversionError(
                f"{path}: shares the label file {LABELS_DIR}/{stem}.txt with "
                f"{image_files[stem].name}"
            )
        image_files[stem] = path
    for label in labels_dir.glob("*.txt"):
        if label.stem not in image_files:
            raise ConversionError(f"{label}: no image for this label file in {images_dir}")

    images: list[DMImage] = []
    for stem, path in image_files.items():
        size = image_sizes.get(path.name) if image_sizes is not None else None
        width, height = size if size is not None else _header_size(path)
        label = labels_dir / f"{stem}.txt"
        annotations = _read_labels(label, classes, width, height) if label.is_file() else []
        try:
            images.append(
                DMImage(file_name=path.name, width=width, height=height, annotations=annotations)
            )
        except ValidationError as error:
            raise ConversionError(f"{path}: not a valid DM image: {error}") from error
    return Dataset(classes=classes, images=images)


def _header_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError) as error:
        raise ConversionError(f"{path}: cannot read the image's size: {error}") from error
    return width, height


def _read_classes(root: Path) -> tuple[str, ...]:
    classes_file = root / CLASSES_FILE
    if classes_file.is_file():
        text = _read_text(classes_file)
        names = text.split("\n")
        if names and names[-1] == "":
            names.pop()  # the final line's line break
        classes: list[str] = []
        for number, name in enumerate(names, start=1):
            name = name.removesuffix("\r")
            if not name.strip():
                raise ConversionError(f"{classes_file}, line {number}: empty class name")
            classes.append(name)
        return _distinct(classes, classes_file)

    data_yaml = root / DATA_YAML
    if not data_yaml.is_file():
        raise ConversionError(f"{root}: neither {CLASSES_FILE} nor {DATA_YAML}; no classes")
    try:
        data = yaml.safe_load(_read_text(data_yaml))
    except yaml.YAMLError as error:
        raise ConversionError(f"{data_yaml}: not YAML: {error}") from error
    names_value = data.get("names") if isinstance(data, dict) else None
    if isinstance(names_value, list):
        listed = names_value
    elif (
        isinstance(names_value, dict)
        and all(type(key) is int for key in names_value)
        and sorted(names_value) == list(range(len(names_value)))
    ):
        # Ultralytics' other spelling: {0: name, 1: name, ...}.
        listed = [names_value[index] for index in range(len(names_value))]
    else:
        raise ConversionError(
            f"{data_yaml}: `names` must be a list of class names or a mapping 0..n-1 to them"
        )
    if not all(isinstance(name, str) and name.strip() for name in listed):
        raise ConversionError(f"{data_yaml}: every class name must be non-empty text")
    return _distinct(listed, data_yaml)


def _distinct(names: list[str], source: Path) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ConversionError(f"{source}: class names {twice} appear more than once")
    return tuple(names)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path}: cannot read it as UTF-8 text: {error}") from error


def _read_labels(
    label: Path, classes: tuple[str, ...], width: int, height: int
) -> list[BoundingBox | Polygon]:
    return _parse_label_lines(_read_text(label), str(label), classes, width, height)


def _parse_label_lines(
    text: str, source: str, classes: Sequence[str], width: int, height: int
) -> list[BoundingBox | Polygon]:
    """The shapes of one label file's text; errors name `source` and the line."""
    annotations: list[BoundingBox | Polygon] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{source}, line {number}"
        count = len(tokens)
        if count != 5 and (count < 7 or count % 2 == 0):
            raise ConversionError(
                f"{where}: {count} values; expected 5 (class cx cy w h) or an odd number of "
                "at least 7 (class x1 y1 x2 y2 x3 y3 ...)"
            )
        class_name = classes[_class_id(tokens[0], len(classes), where)]
        try:
            values = [float(token) for token in tokens[1:]]
        except ValueError as error:
            raise ConversionError(f"{where}: a coordinate is not a number: {error}") from error
        if not all(math.isfinite(value) for value in values):
            raise ConversionError(f"{where}: coordinates must be finite numbers")
        annotation_id = str(len(annotations) + 1)
        try:
            if count == 5:
                cx, cy, w, h = values
                if w < 0 or h < 0:
                    raise ConversionError(f"{where}: negative box width or height")
                annotations.append(
                    BoundingBox(
                        id=annotation_id,
                        class_name=class_name,
                        bbox=((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height),
                    )
                )
            else:
                annotations.append(
                    Polygon(
                        id=annotation_id,
                        class_name=class_name,
                        points=[
                            (values[i] * width, values[i + 1] * height)
                            for i in range(0, len(values), 2)
                        ],
                    )
                )
        except ValidationError as error:
            raise ConversionError(f"{where}: not a valid DM shape: {error}") from error
    return annotations


def _class_id(token: str, count: int, where: str) -> int:
    try:
        class_id = int(token)
    except ValueError:
        # np.savetxt writes the class column as a float (1.000000e+00); Ultralytics and
        # supervision both read such files.
        try:
            number = float(token)
        except ValueError:
            number = math.nan
        if not number.is_integer():
            raise ConversionError(f"{where}: class id {token!r} is not a whole number") from None
        class_id = int(number)
    if not 0 <= class_id < count:
        raise ConversionError(f"{where}: class id {class_id} is not in 0..{count - 1}")
    return class_id


# -- single files (to_task: one annotation file per data unit) --------------------------------


def parse_yolo_file(
    data: bytes, classes: Sequence[str], file_name: str, width: int, height: int
) -> DMImage:
    """One YOLO label file (`class cx cy w h` or polygon lines) as the DM image `file_name`.

    `classes[i]` is the name of class id `i`; `width` and `height` are the image's size in
    pixels, which YOLO's normalised coordinates need (the caller reads it from the image).
    Lines read as in `read_yolo`; raises `ConversionError` naming `file_name` and the line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConversionError(f"{file_name}: cannot read it as UTF-8 text: {error}") from error
    annotations = _parse_label_lines(text, file_name, classes, width, height)
    try:
        return DMImage(file_name=file_name, width=width, height=height, annotations=annotations)
    except ValidationError as error:
        raise ConversionError(f"{file_name}: not a valid DM image: {error}") from error
