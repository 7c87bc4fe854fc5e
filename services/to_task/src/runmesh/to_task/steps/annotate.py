"""Annotate: read each unit's annotation file, convert it to DM and check its classes (the
`file` method; `inference` is `steps.inference`).

Units are processed in chunks of `batch_size`, at most `max_concurrency` files at once. A
unit that fails (no file, unreadable, corrupt, unknown classes) is recorded with its reason
and the run goes on; cancellation is checked before every unit and between chunks.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import PurePosixPath

import orjson
from PIL import Image

from runmesh.converters.base import ConversionError
from runmesh.converters.coco import parse_coco_file
from runmesh.converters.dm_json import detect_annotation_format, parse_dm_file
from runmesh.converters.pascal_voc import parse_pascal_voc_file
from runmesh.converters.yolo import parse_yolo_file
from runmesh.dm import DMData, DMImage
from runmesh.storage import StorageError
from runmesh.to_task.context import Annotated, Item, ToTaskContext
from runmesh.to_task.steps.base import Step
from runmesh.to_task.steps.inference import annotate_with_model

log = logging.getLogger(__name__)

MAX_ANNOTATION_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES = 512 * 1024 * 1024


class _ItemFailed(Exception):
    """One unit cannot be annotated; the message is the reason recorded for it."""


class Annotate(Step):
    """The DM data of every selected unit's task, from its annotation file."""

    name = "annotate"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Convert every item; failures are recorded, annotated tasks skipped unless asked."""
        params = ctx.params
        if params.method == "inference":
            await annotate_with_model(ctx)
            return
        total = len(ctx.items)
        ctx.run.log_message_with_code("ANNOTATION_STARTED", total, params.annotation_format)
        ctx.run.set_progress(0, total, category="annotate_task_data")
        limit = asyncio.Semaphore(params.max_concurrency)
        done = 0
        for start in range(0, total, params.batch_size):
            ctx.run.check_cancelled()
            chunk = ctx.items[start : start + params.batch_size]
            await asyncio.gather(*(self._one(ctx, item, limit) for item in chunk))
            ctx.run.check_cancelled()
            done += len(chunk)
            ctx.run.set_progress(done, total, category="annotate_task_data")
            ctx.report_metrics()

    async def _one(self, ctx: ToTaskContext, item: Item, limit: asyncio.Semaphore) -> None:
        if item.has_data and not ctx.params.overwrite:
            ctx.counts.stand_by -= 1
            ctx.skipped += 1
            return
        async with limit:
            if ctx.run.is_cancelled:
                return  # the chunk's caller raises the cancellation
            ctx.counts.stand_by -= 1
            try:
                image = await _convert(ctx, item)
            except _ItemFailed as exc:
                ctx.fail(item.data_unit_id, str(exc))
                log.info("to_task data unit %s failed: %s", item.data_unit_id, exc)
                return
            except Exception as exc:  # one unit's bug: recorded, the run goes on
                ctx.fail(item.data_unit_id, f"{type(exc).__name__}: {exc}")
                log.exception("to_task data unit %s failed", item.data_unit_id)
                return
        ctx.annotated.append(
            Annotated(item.data_unit_id, item.task_id, DMData(images=[image]), item.has_data)
        )


async def _convert(ctx: ToTaskContext, item: Item) -> DMImage:
    """The unit's annotation file as a DM image named after its primary file."""
    params = ctx.params
    spec = params.target_specification_name
    assert spec is not None  # the params require it for the file method
    target = item.files.get(spec)
    if target is None:
        raise _ItemFailed(f"no file of specification {spec!r}")
    primary = item.files.get(ctx.primary_spec)
    if primary is None:
        raise _ItemFailed(f"no file of the primary specification {ctx.primary_spec!r}")
    file_name = PurePosixPath(target["uri"]).name
    image_name = PurePosixPath(primary["uri"]).name
    data = await _read(ctx, target["uri"], MAX_ANNOTATION_BYTES)
    try:
        fmt: str = params.annotation_format
        if fmt == "auto":
            fmt = detect_annotation_format(data, file_name)
        size: tuple[int, int] | None = None
        if fmt == "yolo" or (fmt == "coco" and not _coco_has_images(data)):
            size = await _image_size(ctx, primary["uri"])
        image = await asyncio.to_thread(_parse, ctx, fmt, data, file_name, size)
    except ConversionError as exc:
        raise _ItemFailed(str(exc)) from exc
    known = set(ctx.classes)
    unknown = sorted({a.class_name for a in image.annotations if a.class_name not in known})
    if unknown:
        raise _ItemFailed(
            f"{file_name}: classes not in the project's label schema: "
            + ", ".join(map(repr, unknown))
        )
    return image.model_copy(update={"file_name": image_name})


def _parse(
    ctx: ToTaskContext,
    fmt: str,
    data: bytes,
    file_name: str,
    size: tuple[int, int] | None,
) -> DMImage:
    """Parse one file in its format (in a worker thread: XML and JSON parsing is CPU work)."""
    width, height = size if size is not None else (None, None)
    if fmt == "dm":
        return parse_dm_file(data, file_name)
    if fmt == "coco":
        return parse_coco_file(data, file_name, width, height)
    if fmt == "pascal_voc":
        return parse_pascal_voc_file(data, file_name)
    assert width is not None and height is not None
    # Named after the label file, so that an error names it; renamed to the image's after.
    return parse_yolo_file(data, ctx.classes, file_name, width, height)


def _coco_has_images(data: bytes) -> bool:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return True  # the parser reports it
    return not isinstance(document, dict) or bool(document.get("images"))


async def _read(ctx: ToTaskContext, uri: str, max_bytes: int) -> bytes:
    try:
        storage, path = ctx.uris.open(uri)
        async with asyncio.timeout(120):
            return await storage.read_bytes(path, max_bytes=max_bytes)
    except (StorageError, OSError, TimeoutError) as exc:
        raise _ItemFailed(f"cannot read {uri}: {type(exc).__name__}: {exc}") from exc


async def _image_size(ctx: ToTaskContext, uri: str) -> tuple[int, int]:
    """The primary image's (width, height), from its header (no pixels are decoded)."""
    data = await _read(ctx, uri, MAX_IMAGE_BYTES)

    def header() -> tuple[int, int]:
        with Image.open(io.BytesIO(data)) as image:
            return image.size

    try:
        return await asyncio.to_thread(header)
    except (OSError, Image.DecompressionBombError) as exc:
        raise _ItemFailed(f"{uri}: cannot read the image's size: {exc}") from exc
