"""Save files: finish the format files, add the error lists, store everything written."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from runmesh.export.context import ExportContext
from runmesh.export.emitted_files import raise_failures, store_batch, store_emitted
from runmesh.export.steps.base import Step
from runmesh.export.steps.convert_items import ISSUES_FILE
from runmesh.storage import StorageError

log = logging.getLogger(__name__)

_SMALL_FILE_BYTES = 1 << 20
_BATCH = 1000  # small files read and stored together (memory: at most 1,000 x 1 MiB)
_CHUNK_BYTES = 1 << 20

ERROR_LIST = "error_file_list.json"


class SaveFiles(Step):
    """Closes the writers, calls `additional_file_saving`, and uploads the staged files."""

    name = "save_files"

    async def execute(self, ctx: ExportContext) -> None:
        """Everything staged goes to `<export folder>/…`; error lists always come along."""
        for writer in ctx.writers.values():
            await asyncio.to_thread(writer.close)
        await store_emitted(ctx, force=True)
        await asyncio.to_thread(ctx.hooks.additional_file_saving, ctx)
        errors = {
            "json_file_name": [list(pair) for pair in ctx.json_errors],
            "origin_file_name": [list(pair) for pair in ctx.original_errors],
        }
        (ctx.staging / ERROR_LIST).write_bytes(orjson.dumps(errors, option=orjson.OPT_INDENT_2))
        issues = ctx.staging / ISSUES_FILE
        if issues.exists() and issues.stat().st_size == 0:
            issues.unlink()
        files = await asyncio.to_thread(_staged_files, ctx.staging)
        await _store(ctx, files)
        ctx.run.log_message_with_code("FILES_SAVED", len(files), ctx.export_dir)
        destination = ctx.destination
        ctx.run.log_artifact(
            ctx.params.name, destination.url(ctx.export_dir), media_type="inode/directory"
        )


def _staged_files(staging: Path) -> list[str]:
    found: list[str] = []
    for directory, _, names in os.walk(staging):
        for name in names:
            found.append((Path(directory) / name).relative_to(staging).as_posix())
    return sorted(found)


async def _store(ctx: ExportContext, files: list[str]) -> None:
    """Store the staged files; a file the storage refuses fails the export.

    Small files (label files, per-image JSON: thousands of them) go in batches through
    `write_many`; large ones (a COCO `annotations.json`) are streamed from disk.
    """
    destination = ctx.destination
    failures: list[str] = []
    sizes = await asyncio.to_thread(_sizes, ctx.staging, files)
    small = [f for f in files if sizes[f] <= _SMALL_FILE_BYTES]
    for start in range(0, len(small), _BATCH):
        batch = small[start : start + _BATCH]
        contents = await asyncio.to_thread(_read_all, ctx.staging, batch)
        failures += await store_batch(ctx, list(zip(batch, contents, strict=True)))
    for relative in (f for f in files if sizes[f] > _SMALL_FILE_BYTES):
        target = f"{ctx.export_dir}/{relative}"
        try:
            await destination.write(target, _read_chunks(ctx.staging / relative))
        except StorageError as exc:
            failures.append(f"{relative}: {exc}")
    raise_failures(failures)


def _sizes(root: Path, relatives: list[str]) -> dict[str, int]:
    return {relative: (root / relative).stat().st_size for relative in relatives}


def _read_all(root: Path, relatives: list[str]) -> list[bytes]:
    return [(root / relative).read_bytes() for relative in relatives]


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK_BYTES):
            yield chunk
