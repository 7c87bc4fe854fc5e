"""Save files: finish the format files, add the error lists, store everything written."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson

from runmesh.common.storage import StorageError
from runmesh.export.context import ExportContext
from runmesh.export.errors import ExportWriteError
from runmesh.export.steps.base import Step

log = logging.getLogger(__name__)

ERROR_LIST = "error_file_list.json"
ISSUES_FILE = "conversion_issues.jsonl"


class SaveFiles(Step):
    """Closes the writers, calls `additional_file_saving`, and uploads the staged files."""

    name = "save_files"

    async def execute(self, ctx: ExportContext) -> None:
        """Everything staged goes to `<export folder>/…`; error lists always come along."""
        assert ctx.destination is not None
        for writer in ctx.writers.values():
            await asyncio.to_thread(writer.close)
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
    """Upload the staged files concurrently; a file the storage refuses fails the export."""
    assert ctx.destination is not None
    destination = ctx.destination
    limit = asyncio.Semaphore(ctx.params.max_concurrency)
    failures: list[str] = []

    async def store(relative: str) -> None:
        target = f"{ctx.export_dir}/{relative}"
        async with limit:
            data = await asyncio.to_thread((ctx.staging / relative).read_bytes)
            try:
                await destination.write_bytes(target, data)
            except StorageError as exc:
                failures.append(f"{relative}: {exc}")
                return
        ctx.stored_paths.append(target)

    await asyncio.gather(*(store(relative) for relative in files))
    if failures:
        shown = "; ".join(failures[:5])
        raise ExportWriteError(f"{len(failures)} export files could not be stored: {shown}")
