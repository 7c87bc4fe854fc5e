"""Convert items: stream them from PostgreSQL, run the hooks, write the format, copy images.

Items come through a server-side cursor in chunks, so memory stays flat in their number.
Each chunk's hooks and format writing run in one worker thread (they are CPU work, and the
user's hooks may block); its original files are then copied concurrently. An item that fails
is recorded with its reason and the export goes on: one bad task never fails the export.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

import orjson
from pydantic import ValidationError

from runmesh.catalog import annotation
from runmesh.core.validation import describe_errors
from runmesh.dm import DMImage, parse_dm
from runmesh.export.context import ExportContext, ItemData
from runmesh.export.emitted_files import store_emitted
from runmesh.export.steps.base import Step
from runmesh.storage import Storage, StorageError, StorageNotFound

log = logging.getLogger(__name__)

ISSUES_FILE = "conversion_issues.jsonl"
"""Staged file of what the format could not hold: one JSON object per line."""

CHUNK = 256
"""Items per chunk: one thread hop for the hooks and the writer, one batch of copies."""


@dataclass(slots=True, frozen=True)
class _Original:
    item: str
    uri: str
    destination: str  # relative to the export folder


@dataclass(slots=True)
class _ChunkResult:
    originals: list[_Original]
    issues: list[bytes]
    null_items: list[str]


# Missing originals logged one by one (a warning each); beyond that only counted in a closing
# line, since the error list holds every one and a bucket gone missing would flood the log.
LOGGED_ORIGINAL_ERRORS = 20


class ConvertItems(Step):
    """`before_convert` → `convert_data` → `after_convert` per item, then the format writer."""

    name = "convert_items"

    async def execute(self, ctx: ExportContext) -> None:
        """Stream, convert and write every item; copy originals when asked."""
        params = ctx.params
        ctx.run.log_message_with_code(
            "CONVERSION_STARTED", ctx.total, params.extra_params.output_format
        )
        ctx.data_files.stand_by = ctx.total
        ctx.run.set_progress(0, ctx.total, category="dataset_conversion")
        issues_file = (ctx.staging / ISSUES_FILE).open("ab")
        done = 0
        try:
            async with ctx.pool.acquire(timeout=30) as conn:
                chunk: list[annotation.ExportItem] = []
                async for item in annotation.stream_export_items(
                    conn, ctx.tenant, params.target, params.filter
                ):
                    chunk.append(item)
                    if len(chunk) == CHUNK:
                        await self._chunk(ctx, chunk, issues_file)
                        done += len(chunk)
                        chunk = []
                        ctx.run.set_progress(done, ctx.total, category="dataset_conversion")
                        ctx.report_metrics()
                        ctx.run.check_cancelled()
                if chunk:
                    await self._chunk(ctx, chunk, issues_file)
                    done += len(chunk)
        finally:
            issues_file.close()
        ctx.run.set_progress(done, done, category="dataset_conversion")
        ctx.report_metrics()
        ctx.run.log_message_with_code(
            "CONVERSION_COMPLETED", ctx.data_files.success, ctx.data_files.failed, ctx.skipped
        )
        unlogged = len(ctx.original_errors) - LOGGED_ORIGINAL_ERRORS
        if unlogged > 0:
            ctx.run.log_message_with_code("MORE_ORIGINALS_NOT_COPIED", unlogged)

    async def _chunk(
        self, ctx: ExportContext, items: list[annotation.ExportItem], issues_file: BinaryIO
    ) -> None:
        result = await asyncio.to_thread(_convert_chunk, ctx, items)
        for label in result.null_items:
            ctx.run.log_message_with_code("NULL_DATA_DETECTED", label)
        if result.issues:
            ctx.conversion_issues += len(result.issues)
            issues_file.write(b"".join(result.issues))
        await store_emitted(ctx)
        if ctx.params.save_original_file and result.originals:
            await _copy_originals(ctx, result.originals)


def _convert_chunk(ctx: ExportContext, items: list[annotation.ExportItem]) -> _ChunkResult:
    """Hooks and writer for one chunk (in a worker thread; touches no asyncio object)."""
    originals: list[_Original] = []
    issues: list[bytes] = []
    null_items: list[str] = []
    hooks = ctx.hooks
    for item in items:
        label = f"{ctx.params.target}-{item.id}"
        ctx.data_files.stand_by -= 1
        if item.data is None:
            null_items.append(label)
            ctx.skipped += 1
            continue
        record: ItemData = {
            "id": item.id,
            "data": item.data,
            "files": item.files,
            "meta": item.meta,
            "data_unit_id": item.data_unit_id,
        }
        try:
            converted = hooks.after_convert(hooks.convert_data(hooks.before_convert(record)))
            if converted is None:
                ctx.skipped += 1
                continue
            dm = parse_dm(converted["data"])
            writer = ctx.writers[_split_of(ctx, item.id)]
            renamed: list[tuple[DMImage, str]] = []
            for image in dm.images:
                uri = _source_uri(item, image.file_name)
                name = f"{item.id}_{PurePosixPath(image.file_name).name}"
                renamed.append((image.model_copy(update={"file_name": name}), uri))
            for image, uri in renamed:
                for issue in writer.add(image):
                    issues.append(
                        orjson.dumps(
                            {
                                "item": label,
                                "image": issue.image,
                                "annotation_id": issue.annotation_id,
                                "reason": issue.reason,
                            },
                            option=orjson.OPT_APPEND_NEWLINE,
                        )
                    )
                prefix = f"{_split_of(ctx, item.id)}/" if ctx.params.extra_params.split else ""
                originals.append(_Original(label, uri, prefix + writer.image_path(image.file_name)))
        except ValidationError as exc:
            _failed(ctx, label, f"not valid DM: {describe_errors(exc.errors(), limit=5)}")
        except Exception as exc:  # noqa: BLE001 -- a user hook or one item: recorded, export goes on
            _failed(ctx, label, f"{type(exc).__name__}: {exc}")
        else:
            ctx.data_files.success += 1
    return _ChunkResult(originals, issues, null_items)


def _failed(ctx: ExportContext, label: str, reason: str) -> None:
    ctx.data_files.failed += 1
    ctx.json_errors.append((label, reason))
    log.info("export item %s failed: %s", label, reason)


def _source_uri(item: annotation.ExportItem, file_name: str) -> str:
    """The data unit's file the DM image names (by file name; else the primary file)."""
    wanted = PurePosixPath(file_name).name
    for data_file in item.files.values():
        if PurePosixPath(str(data_file["uri"])).name == wanted:
            return str(data_file["uri"])
    primary = item.files.get(item.primary_spec or "")
    if primary is not None:
        return str(primary["uri"])
    if len(item.files) == 1:
        return str(next(iter(item.files.values()))["uri"])
    raise ValueError(f"data unit {item.data_unit_id} has no file named {wanted!r}")


def _split_of(ctx: ExportContext, item_id: int) -> str:
    """A stable split per item: a hash of its id against the cumulative ratios."""
    split = ctx.params.extra_params.split
    if not split:
        return ""
    digest = hashlib.blake2b(str(item_id).encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64
    cumulative = 0.0
    for name, ratio in split.items():
        cumulative += ratio
        if point < cumulative:
            return name
    return next(reversed(split))


async def _copy_originals(ctx: ExportContext, originals: list[_Original]) -> None:
    """Copy each original image next to its annotations, skipping ones already there."""
    destination, uris = ctx.destination, ctx.uris
    limit = asyncio.Semaphore(ctx.params.max_concurrency)

    async def copy(original: _Original) -> None:
        target = f"{ctx.export_dir}/{original.destination}"
        async with limit:
            ctx.run.check_cancelled()  # a chunk's copies can take long: stop between files
            try:
                source, path = uris.open(original.uri)
                if await _same_size_present(source, path, destination, target):
                    ctx.original_files.success += 1  # written by an earlier attempt
                    return
                await destination.write(target, source.read(path))
            except (StorageError, OSError) as exc:
                ctx.original_files.failed += 1
                why = f"{original.uri}: {exc}"
                ctx.original_errors.append((original.item, why))
                if len(ctx.original_errors) <= LOGGED_ORIGINAL_ERRORS:
                    ctx.run.log_message_with_code("ORIGINAL_NOT_COPIED", original.item, why)
                return
        ctx.original_files.success += 1

    await asyncio.gather(*(copy(original) for original in originals))


async def _same_size_present(source: Storage, path: str, destination: Storage, target: str) -> bool:
    try:
        there = await destination.stat(target)
    except StorageNotFound:
        return False
    return there.size == (await source.stat(path)).size
