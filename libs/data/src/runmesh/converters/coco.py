"""The COCO converter: a streaming writer of `annotations.json` and its reader back into DM.

Layout under the dataset root::

    annotations.json        one file for the whole dataset
    images/<file_name>      the images (written by the caller at `image_path`)

COCO ids are integers: categories are 1..n in the label schema's order, images 1..N in the
order they are added, annotations 1..M. What COCO has no field for rides in extra fields that
pycocotools and most COCO tools ignore, so that DM → COCO → DM is lossless: `dm_id` (the DM
annotation's string id) and `attributes`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

import orjson
from pydantic import ValidationError

from runmesh.converters.base import ConversionError, ConversionIssue, Dataset, DatasetWriter
from runmesh.dm import BoundingBox, Classification, DMImage, Polygon

ANNOTATIONS_FILE: Final = "annotations.json"
IMAGES_DIR: Final = "images"

# Spooled entries are written already separated, so close() copies each spool into the
# array verbatim in chunks: one annotation per line keeps the file greppable and diffable.
_SEPARATOR: Final = b",\n"
_SPOOL_BUFFER: Final = 1 << 20


class CocoWriter(DatasetWriter):
    """Writes a COCO detection/keypoints dataset: `annotations.json` and `images/`.

    Memory stays flat in the number of images: `add` spools each image's `images` and
    `annotations` entries to anonymous temporary files under `root` (not the system temp
    dir, which may be a tmpfs, i.e. memory), and `close` streams them into
    `annotations.json`. Only per-class keypoint counts are kept, for the categories.

    Keypoint lists are written as DM holds them; when lists of one class differ in length,
    the category's `keypoints` names cover the longest (COCO's evaluation expects one length
    per category, which DM does not guarantee).
    """

    format = "coco"

    def __init__(self, root: Path, classes: Sequence[str]) -> None:
        super().__init__(root, classes)
        root.mkdir(parents=True, exist_ok=True)
        # Held open until close(), which closes them: no `with` can span the two calls.
        self._images: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            dir=root, buffering=_SPOOL_BUFFER
        )
        self._annotations: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            dir=root, buffering=_SPOOL_BUFFER
        )
        self._image_count = 0
        self._annotation_count = 0
        # class name -> the longest keypoint list seen: the category's keypoint names
        self._keypoint_counts: dict[str, int] = {}
        self._closed = False

    def image_path(self, file_name: str) -> str:
        """`images/<file_name>`: COCO's `file_name` is relative to the images folder."""
        return f"{IMAGES_DIR}/{file_name}"

    def add(self, image: DMImage) -> list[ConversionIssue]:
        """Spool one image and its annotations; classifications and unknown classes are not."""
        if self._closed:
            raise ValueError(f"{self.root / ANNOTATIONS_FILE}: the writer is closed")
        self._image_count += 1
        image_id = self._image_count
        self._write(
            self._images,
            image_id == 1,
            orjson.dumps(
                {
                    "id": image_id,
                    "file_name": image.file_name,
                    "width": image.width,
                    "height": image.height,
                }
            ),
        )
        issues: list[ConversionIssue] = []
        entries: list[bytes] = []
        class_ids = self.class_ids
        # Plain attribute reads and dict literals: this loop runs once per annotation of the
        # dataset, where a model_dump per annotation would dominate the export's time.
        for annotation in image.annotations:
            if isinstance(annotation, Classification):
                issues.append(
                    ConversionIssue(
                        image.file_name,
                        annotation.id,
                        "COCO cannot hold a classification (a label of the whole image)",
                    )
                )
                continue
            class_index = class_ids.get(annotation.class_name)
            if class_index is None:
                issues.append(self.unknown_class(image, annotation.id, annotation.class_name))
                continue
            self._annotation_count += 1
            entry: dict[str, object] = {
                "id": self._annotation_count,
                "image_id": image_id,
                "category_id": class_index + 1,
                "iscrowd": 0,
            }
            if isinstance(annotation, BoundingBox):
                bbox = annotation.bbox
                entry["bbox"] = bbox
                entry["area"] = bbox[2] * bbox[3]
                entry["segmentation"] = []
            elif isinstance(annotation, Polygon):
                points = annotation.points
                entry["bbox"] = _bounds(points)
                entry["area"] = _shoelace(points)
                entry["segmentation"] = [[value for point in points for value in point]]
            else:
                keypoints = annotation.points
                labelled = [point for point in keypoints if point[2] > 0]
                bounds = _bounds(labelled) if labelled else (0.0, 0.0, 0.0, 0.0)
                entry["bbox"] = bounds
                entry["area"] = bounds[2] * bounds[3]
                entry["segmentation"] = []
                entry["keypoints"] = [value for point in keypoints for value in point]
                entry["num_keypoints"] = len(labelled)
                name = annotation.class_name
                if len(keypoints) > self._keypoint_counts.get(name, 0):
                    self._keypoint_counts[name] = len(keypoints)
            entry["dm_id"] = annotation.id
            entry["attributes"] = annotation.attributes
            entries.append(orjson.dumps(entry))
        if entries:
            first = self._annotation_count == len(entries)
            self._write(self._annotations, first, _SEPARATOR.join(entries))
        return issues

    def close(self) -> list[str]:
        """Assemble `annotations.json` from the spools, streaming; returns its relative path."""
        if self._closed:
            raise ValueError(f"{self.root / ANNOTATIONS_FILE}: the writer is closed")
        self._closed = True
        path = self.root / ANNOTATIONS_FILE
        # Written aside and renamed, so that a failed close never leaves a truncated file
        # that looks like a finished dataset.
        partial = path.with_name(f".{ANNOTATIONS_FILE}.partial")
        try:
            with partial.open("wb") as out:
                out.write(b'{"info":{"description":"exported by runmesh"},"licenses":[],')
                out.write(b'\n"images":[\n')
                self._copy(self._images, out)
                out.write(b'\n],\n"annotations":[\n')
                self._copy(self._annotations, out)
                out.write(b'\n],\n"categories":[\n')
                out.write(_SEPARATOR.join(orjson.dumps(c) for c in self._categories()))
                out.write(b"\n]}\n")
            os.replace(partial, path)
        finally:
            self._images.close()
            self._annotations.close()
            partial.unlink(missing_ok=True)
        return [ANNOTATIONS_FILE]

    def _categories(self) -> list[dict[str, object]]:
        categories: list[dict[str, object]] = []
        for index, name in enumerate(self.classes):
            category: dict[str, object] = {"id": index + 1, "name": name, "supercategory": ""}
            count = self._keypoint_counts.get(name)
            if count is not None:
                category["keypoints"] = [f"k{i}" for i in range(count)]
                # pycocotools' showAnns reads `skeleton` of every keypoint category
                category["skeleton"] = []
            categories.append(category)
        return categories

    @staticmethod
    def _write(spool: IO[bytes], first: bool, data: bytes) -> None:
        if not first:
            spool.write(_SEPARATOR)
        spool.write(data)

    @staticmethod
    def _copy(spool: IO[bytes], out: IO[bytes]) -> None:
        spool.flush()
        spool.seek(0)
        shutil.copyfileobj(spool, out, _SPOOL_BUFFER)


def _bounds(points: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """[x, y, width, height] of the smallest box holding the points (at least one)."""
    xs = [point[0] for point in points]
    ys = [point[1] for point in points]
    x, y = min(xs), min(ys)
    return (x, y, max(xs) - x, max(ys) - y)


def _shoelace(points: Sequence[tuple[float, float]]) -> float:
    """The area of a simple polygon from its vertices in order (either direction)."""
    twice = 0.0
    x0, y0 = points[-1]
    for x1, y1 in points:
        twice += x0 * y1 - x1 * y0
        x0, y0 = x1, y1
    return abs(twice) / 2


def read_coco(root: Path) -> Dataset:
    """Read the COCO dataset under `root` back into DM.

    Classes come in category-id order, images in image-id order with their annotations in
    annotation-id order. An annotation's DM id is its `dm_id`, else its COCO id as text; a
    non-empty `segmentation` makes a polygon (its first ring), `keypoints` make keypoints
    (triples), anything else is a bounding box. Raises `ConversionError` naming the file and
    the entry at fault for anything that is not such a dataset, RLE (crowd) masks included:
    DM has no mask shape, and a reader has no way to report a shape it dropped.
    """
    path = root / ANNOTATIONS_FILE
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as error:
        raise ConversionError(f"{path}: cannot be read: {error}") from error
    except orjson.JSONDecodeError as error:
        raise ConversionError(f"{path}: not valid JSON: {error}") from error
    return _CocoReader(path).read(document)


class _CocoReader:
    """Checks a parsed annotations.json entry by entry; every error names the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: {where}: {message}")

    def read(self, document: object) -> Dataset:
        if not isinstance(document, dict):
            raise self.fail("top level", "expected a JSON object")
        categories = self.entries(document, "categories")
        images = self.entries(document, "images")
        annotations = self.entries(document, "annotations")

        class_by_id: dict[int, str] = {}
        for index, category in enumerate(categories):
            where = f"categories[{index}]"
            category_id = self.integer(category, "id", where)
            if category_id in class_by_id:
                raise self.fail(where, f"category id {category_id} is used twice")
            class_by_id[category_id] = self.text(category, "name", where)

        image_fields: dict[int, dict[str, object]] = {}
        shapes: dict[int, list[tuple[int, dict[str, object]]]] = {}
        for index, image in enumerate(images):
            where = f"images[{index}]"
            image_id = self.integer(image, "id", where)
            if image_id in image_fields:
                raise self.fail(where, f"image id {image_id} is used twice")
            image_fields[image_id] = {
                "file_name": self.value(image, "file_name", where),
                "width": self.value(image, "width", where),
                "height": self.value(image, "height", where),
            }
            shapes[image_id] = []

        for index, annotation in enumerate(annotations):
            where = f"annotations[{index}]"
            annotation_id = self.integer(annotation, "id", where)
            image_id = self.integer(annotation, "image_id", where)
            category_id = self.integer(annotation, "category_id", where)
            if image_id not in shapes:
                raise self.fail(where, f"image_id {image_id} is not an image's id")
            if category_id not in class_by_id:
                raise self.fail(where, f"category_id {category_id} is not a category's id")
            shape = self.shape(annotation, where)
            dm_id = annotation.get("dm_id")
            shape["id"] = dm_id if dm_id is not None else str(annotation_id)
            shape["class_name"] = class_by_id[category_id]
            shape["attributes"] = annotation.get("attributes", {})
            shapes[image_id].append((annotation_id, shape))

        dm_images: list[DMImage] = []
        for image_id in sorted(image_fields):
            ordered = sorted(shapes[image_id], key=lambda pair: pair[0])
            fields = image_fields[image_id]
            fields["annotations"] = [shape for _, shape in ordered]
            try:
                dm_images.append(DMImage.model_validate(fields))
            except ValidationError as error:
                raise self.fail(f"image id {image_id}", f"not valid DM: {error}") from error
        classes = tuple(class_by_id[category_id] for category_id in sorted(class_by_id))
        return Dataset(classes=classes, images=dm_images)

    def shape(self, annotation: dict[str, object], where: str) -> dict[str, object]:
        """The DM shape fields of a COCO annotation (its type and geometry)."""
        segmentation = annotation.get("segmentation")
        if segmentation:
            if not isinstance(segmentation, list):
                raise self.fail(where, "an RLE segmentation (a mask) has no DM shape")
            ring = self.numbers(segmentation[0], "segmentation[0]", where)
            if len(ring) % 2:
                raise self.fail(where, "segmentation[0] has an odd number of coordinates")
            return {"type": "polygon", "points": list(zip(ring[0::2], ring[1::2], strict=True))}
        keypoints = annotation.get("keypoints")
        if keypoints:
            flat = self.numbers(keypoints, "keypoints", where)
            if len(flat) % 3:
                raise self.fail(where, "keypoints is not a list of [x, y, v] triples")
            triples = zip(flat[0::3], flat[1::3], flat[2::3], strict=True)
            return {"type": "keypoints", "points": list(triples)}
        return {"type": "bounding_box", "bbox": self.value(annotation, "bbox", where)}

    def entries(self, document: dict[str, object], key: str) -> list[dict[str, object]]:
        """The top-level array `key`, each entry checked to be an object."""
        value = document.get(key)
        if not isinstance(value, list):
            raise self.fail(key, "missing, or not an array")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise self.fail(f"{key}[{index}]", "expected a JSON object")
        return value

    def value(self, entry: dict[str, object], key: str, where: str) -> object:
        if key not in entry:
            raise self.fail(where, f"missing key {key!r}")
        return entry[key]

    def integer(self, entry: dict[str, object], key: str, where: str) -> int:
        value = self.value(entry, key, where)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"{key!r} must be an integer, not {value!r}")
        return value

    def text(self, entry: dict[str, object], key: str, where: str) -> str:
        value = self.value(entry, key, where)
        if not isinstance(value, str):
            raise self.fail(where, f"{key!r} must be a string, not {value!r}")
        return value

    def numbers(self, value: object, key: str, where: str) -> list[float]:
        if not isinstance(value, list) or not all(
            isinstance(item, int | float) and not isinstance(item, bool) for item in value
        ):
            raise self.fail(where, f"{key!r} must be an array of numbers")
        return value


# -- single files (to_task: one annotation file per data unit) --------------------------------


def parse_coco_file(
    data: bytes, file_name: str, width: int | None = None, height: int | None = None
) -> DMImage:
    """The one image of a COCO document holding a single image's annotations.

    The document has `categories` and `annotations`; its `images` holds that one image, or is
    absent (or empty), in which case every annotation belongs to the image `file_name` of
    `width` x `height` (both then required). Shapes read as in `read_coco`. Raises
    `ConversionError` naming `file_name` for anything else, more than one image included.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ConversionError(f"{file_name}: not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ConversionError(f"{file_name}: top level: expected a JSON object")
    if not document.get("images"):
        annotations = document.get("annotations")
        image_ids = {
            entry.get("image_id")
            for entry in (annotations if isinstance(annotations, list) else [])
            if isinstance(entry, dict)
        }
        if len(image_ids) > 1:
            raise ConversionError(
                f"{file_name}: annotations of {len(image_ids)} images and no `images` to tell "
                "which is this data unit's"
            )
        if width is None or height is None:
            raise ConversionError(f"{file_name}: no `images` entry and no image size to use")
        image_id = next(iter(image_ids), 1)
        document = {
            **document,
            "images": [{"id": image_id, "file_name": file_name, "width": width, "height": height}],
        }
    dataset = _CocoReader(Path(file_name)).read(document)
    if len(dataset.images) != 1:
        raise ConversionError(
            f"{file_name}: holds {len(dataset.images)} images; expected one image's annotations"
        )
    return dataset.images[0]
