"""Load a training dataset: images as arrays with their labelled boxes, from a ground-truth
version, an export run's folder, or any dataset folder in storage (DM, COCO, YOLO, VOC)."""

from __future__ import annotations

import asyncio
import io
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import numpy.typing as npt
import orjson
from PIL import Image

from runmesh.catalog import ground_truth, repository
from runmesh.converters.base import ConversionError, Dataset
from runmesh.converters.coco import read_coco
from runmesh.converters.dm_json import read_dm_json
from runmesh.converters.pascal_voc import read_pascal_voc
from runmesh.converters.yolo import read_yolo
from runmesh.core.settings import Settings
from runmesh.dm import BoundingBox, DMData, DMImage
from runmesh.storage import StorageError, TenantUris
from runmesh.train.errors import DatasetError
from runmesh.train.model import Box
from runmesh.train.params import DatasetRef

Split: TypeAlias = Literal["train", "validation", "test"]
ImageArray: TypeAlias = npt.NDArray[np.uint8]

MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_DATASET_BYTES = 4 * 1024 * 1024 * 1024  # a folder dataset is copied to local disk first
_PAGE = 500
# Where each layout keeps its images (the export service writes these, and so do the usual
# tools), and its split sub-folders.
_IMAGE_DIRS = {
    "dm": "original_files",
    "coco": "images",
    "yolo": "images",
    "pascal_voc": "JPEGImages",
}
_SPLIT_DIRS: dict[str, Split] = {
    "train": "train",
    "valid": "validation",
    "val": "validation",
    "validation": "validation",
    "test": "test",
}


@dataclass(slots=True)
class Sample:
    """One image with its boxes, and the split it belongs to when the dataset says so."""

    key: str
    image: ImageArray
    boxes: list[tuple[str, Box]]
    split: Split | None


@dataclass(slots=True)
class LoadedDataset:
    """Images with boxes and the class names they use, in the dataset's order."""

    classes: list[str]
    samples: list[Sample]
    skipped: list[tuple[str, str]]  # (image, why) that could not be used


Progress = Callable[[int, int], None]


def decode_image(data: bytes) -> ImageArray:
    """RGB pixels of an encoded image (CPU work: call it in a thread)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def boxes_of(image: DMImage) -> list[tuple[str, Box]]:
    """The image's bounding boxes as (class, (x, y, w, h)); other shapes are not learnt."""
    return [
        (a.class_name, tuple(a.bbox))  # type: ignore[misc]
        for a in image.annotations
        if isinstance(a, BoundingBox) and a.bbox[2] >= 1 and a.bbox[3] >= 1
    ]


async def load_dataset(
    ref: DatasetRef,
    *,
    tenant: str,
    settings: Settings,
    pool: asyncpg.Pool,
    uris: TenantUris,
    progress: Progress,
    max_concurrency: int = 8,
) -> LoadedDataset:
    """The referenced dataset, every image decoded; `DatasetError` says what is wrong."""
    if ref.ground_truth_version is not None:
        return await _from_ground_truth(
            ref.ground_truth_version, tenant, settings, pool, uris, progress, max_concurrency
        )
    uri = ref.uri if ref.uri is not None else await _export_uri(pool, tenant, ref.export_run)
    return await _from_folder(uri, ref.format, settings, uris, progress)


# -- ground truth ------------------------------------------------------------------------------


async def _from_ground_truth(
    version_id: uuid.UUID,
    tenant: str,
    settings: Settings,
    pool: asyncpg.Pool,
    uris: TenantUris,
    progress: Progress,
    max_concurrency: int,
) -> LoadedDataset:
    async with pool.acquire(timeout=30) as conn:
        version = await ground_truth.get_ground_truth_version(conn, tenant, version_id)
        if version is None:
            raise DatasetError(f"dataset: ground-truth version {version_id} not found")
        items: list[ground_truth.GroundTruthItemRow] = []
        after = 0
        while page := await ground_truth.list_ground_truth_items(
            conn, tenant, version_id, after_id=after, limit=_PAGE
        ):
            items.extend(page)
            after = page[-1].id
        primaries: dict[uuid.UUID, str | None] = {}
        wanted: list[tuple[str, str, DMImage, Split | None]] = []  # key, uri, image, split
        skipped: list[tuple[str, str]] = []
        for item in items:
            data = DMData.model_validate(item.data)
            if item.data_unit_id is None:
                skipped.extend((f"item {item.id}", "no data unit: no image") for _ in data.images)
                continue
            unit = await repository.get_data_unit(conn, tenant, item.data_unit_id)
            if unit is None:
                skipped.append((f"item {item.id}", f"data unit {item.data_unit_id} is gone"))
                continue
            if unit.data_collection_id not in primaries:
                collection = await repository.get_collection(conn, tenant, unit.data_collection_id)
                spec = collection.primary if collection is not None else None
                primaries[unit.data_collection_id] = spec.name if spec is not None else None
            primary = primaries[unit.data_collection_id]
            file = unit.files.get(primary) if primary is not None else None
            if file is None:
                skipped.append((f"item {item.id}", "its data unit has no primary image file"))
                continue
            for image in data.images[:1]:  # a unit's item describes its one primary image
                wanted.append((f"unit-{unit.id}", file["uri"], image, item.category))
    if not wanted:
        raise DatasetError(f"dataset: ground-truth version {version_id} has no usable image")
    limit = asyncio.Semaphore(max_concurrency)
    done = 0

    async def one(key: str, uri: str, image: DMImage, split: Split | None) -> Sample | None:
        nonlocal done
        async with limit:
            try:
                storage, path = uris.open(uri)
                async with asyncio.timeout(120):
                    data = await storage.read_bytes(path, max_bytes=MAX_IMAGE_BYTES)
                pixels = await asyncio.to_thread(decode_image, data)
            except (StorageError, OSError, TimeoutError, Image.DecompressionBombError) as exc:
                skipped.append((key, f"cannot read {uri}: {exc}"))
                return None
            finally:
                done += 1
                progress(done, len(wanted))
        return Sample(key, pixels, boxes_of(image), split)

    loaded = await asyncio.gather(*(one(*entry) for entry in wanted))
    samples = [sample for sample in loaded if sample is not None]
    return LoadedDataset(_classes(samples), samples, skipped)


# -- folders (export runs, storage) ----------------------------------------------------------


async def _export_uri(pool: asyncpg.Pool, tenant: str, run_id: uuid.UUID | None) -> str:
    """Where a succeeded export run wrote its dataset (its result's `uri`).

    Reads the gateway's run state (schema `runs`, same database): an export's result is the
    one record of where its files are.
    """
    async with pool.acquire(timeout=30) as conn:
        row = await conn.fetchrow(
            "SELECT state, category, result::text AS result FROM runs.runs"
            " WHERE id = $1 AND tenant = $2",
            run_id,
            tenant,
            timeout=30,
        )
    if row is None:
        raise DatasetError(f"dataset: export run {run_id} not found")
    if row["category"] != "export" or row["state"] != "succeeded":
        raise DatasetError(
            f"dataset: run {run_id} is a {row['state']} {row['category']} run, not a succeeded "
            "export"
        )
    result = orjson.loads(row["result"] or "null")
    uri = result.get("uri") if isinstance(result, dict) else None
    if not isinstance(uri, str):
        raise DatasetError(f"dataset: export run {run_id} has no output uri in its result")
    return uri


async def _from_folder(
    uri: str,
    fmt: str,
    settings: Settings,
    uris: TenantUris,
    progress: Progress,
) -> LoadedDataset:
    parts = urlsplit(uri)
    try:
        storage, prefix = uris.open(uri, directory=True)
    except StorageError as exc:
        raise DatasetError(f"dataset: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="runmesh-dataset-") as tmp:
        root = Path(tmp)
        total = 0
        try:
            files = [info async for info in storage.list(prefix, recursive=True)]
            for index, info in enumerate(files):
                total += info.size
                if total > MAX_DATASET_BYTES:
                    raise DatasetError(
                        f"dataset: {uri} holds more than {MAX_DATASET_BYTES >> 30} GiB"
                    )
                relative = PurePosixPath(info.path).relative_to(prefix) if prefix else None
                target = root / str(relative if relative is not None else info.path)
                data = await storage.read_bytes(info.path, max_bytes=MAX_IMAGE_BYTES)
                await asyncio.to_thread(_write_file, target, data)
                progress(index + 1, len(files))
        except StorageError as exc:
            raise DatasetError(
                f"dataset: cannot read {parts.scheme}://{parts.netloc}: {exc}"
            ) from exc
        if not files:
            raise DatasetError(f"dataset: {uri} is empty")
        return await asyncio.to_thread(_read_folder, root, fmt, uri)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_folder(root: Path, fmt: str, uri: str) -> LoadedDataset:
    splits = [
        (child, _SPLIT_DIRS[child.name])
        for child in sorted(root.iterdir())
        if child.is_dir() and child.name in _SPLIT_DIRS
    ]
    parts: Sequence[tuple[Path, Split | None]] = splits or [(root, None)]
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    classes: list[str] = []
    for folder, split in parts:
        layout = fmt if fmt != "auto" else _detect_layout(folder, uri)
        try:
            dataset = _READERS[layout](folder)
        except ConversionError as exc:
            raise DatasetError(f"dataset: {uri}: {exc}") from exc
        classes += [name for name in dataset.classes if name not in classes]
        for image in dataset.images:
            path = folder / _IMAGE_DIRS[layout] / image.file_name
            try:
                pixels = decode_image(path.read_bytes())
            except (OSError, Image.DecompressionBombError) as exc:
                skipped.append((image.file_name, f"cannot read its image: {exc}"))
                continue
            samples.append(
                Sample(f"{split or ''}/{image.file_name}", pixels, boxes_of(image), split)
            )
    if not samples:
        raise DatasetError(f"dataset: {uri} has no readable image")
    return LoadedDataset(classes or _classes(samples), samples, skipped)


def _detect_layout(folder: Path, uri: str) -> str:
    if (folder / "annotations.json").is_file():
        return "coco"
    if (folder / "json").is_dir():
        return "dm"
    if (folder / "labels").is_dir():
        return "yolo"
    if (folder / "Annotations").is_dir():
        return "pascal_voc"
    raise DatasetError(
        f"dataset: {uri}: not a DM (json/), COCO (annotations.json), YOLO (labels/) or Pascal "
        "VOC (Annotations/) dataset; set dataset.format"
    )


def _read_yolo(folder: Path) -> Dataset:
    return read_yolo(folder)


_READERS: dict[str, Callable[[Path], Dataset]] = {
    "dm": read_dm_json,
    "coco": read_coco,
    "yolo": _read_yolo,
    "pascal_voc": read_pascal_voc,
}


def _classes(samples: Sequence[Sample]) -> list[str]:
    return sorted({name for sample in samples for name, _ in sample.boxes})
