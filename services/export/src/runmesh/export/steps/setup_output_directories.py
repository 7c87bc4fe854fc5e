"""Set up output directories: a folder of the run's own in the storage, writers per split."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import orjson

from runmesh.export.context import ExportContext
from runmesh.export.steps.base import Step
from runmesh.storage import Storage, StorageError, StorageNotFound

log = logging.getLogger(__name__)

MARKER = ".runmesh-export.json"
"""Written first into an export folder: which run owns it."""

_MAX_SUFFIX = 1000
_DELETE_CONCURRENCY = 16


class SetupOutputDirectories(Step):
    """Claims `<path>/<name>`, or `<name>(n)` when another run's export is there.

    The folder's marker names the run, so a re-executed run (attempt 2) finds its own folder
    again and rewrites it instead of starting a second copy beside the first.
    """

    name = "setup_output_directories"

    async def execute(self, ctx: ExportContext) -> None:
        """Pick the folder, write its marker, and open one writer per split."""
        base = "/".join(part for part in (ctx.params.path.strip("/"), ctx.params.name) if part)
        for n in range(_MAX_SUFFIX):
            candidate = base if n == 0 else f"{base}({n})"
            owner = await _owner(ctx.destination, candidate)
            if owner is None or owner == str(ctx.run_id):
                ctx.export_dir = candidate
                break
        else:
            raise StorageError(f"{base}(1) to ({_MAX_SUFFIX - 1}) are all taken; choose a name")
        marker = {"run_id": str(ctx.run_id), "started_at": datetime.now(UTC).isoformat()}
        await ctx.destination.write_bytes(f"{ctx.export_dir}/{MARKER}", orjson.dumps(marker))
        ratios = ctx.params.extra_params.split
        splits: list[str] = list(ratios) if ratios else [""]
        for split in splits:
            root = ctx.staging / split if split else ctx.staging
            root.mkdir(parents=True, exist_ok=True)
            writer = ctx.hooks.make_writer(root, list(ctx.classes))
            writer.outlet = []  # per-image files go straight to the destination
            ctx.writers[split] = writer
        ctx.run.log_message(f"exporting into {ctx.destination_name}:{ctx.export_dir}")

    async def rollback(self, ctx: ExportContext) -> None:
        """Delete the run's folder: every object under it (the marker says it is ours)."""
        if not ctx.export_dir:
            return
        destination = ctx.destination
        paths = [info.path async for info in destination.list(ctx.export_dir, recursive=True)]
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def delete(path: str) -> None:
            async with limit:
                try:
                    await destination.delete(path)
                except StorageError as exc:
                    log.warning("rollback could not delete %s: %s", path, exc)

        await asyncio.gather(*(delete(path) for path in paths))
        ctx.run.log_message(
            f"rollback: deleted {len(paths)} files of {ctx.export_dir}", level="warning"
        )


async def _owner(storage: Storage, folder: str) -> str | None:
    """The run id a folder's marker names; None when nothing is in the folder."""
    try:
        raw = await storage.read_bytes(f"{folder}/{MARKER}", max_bytes=64 * 1024)
    except StorageNotFound:
        try:
            async for _ in storage.list(folder, recursive=True):
                return "?"  # files that no export run wrote: never reused
        except StorageNotFound:
            pass
        return None
    try:
        return str(orjson.loads(raw)["run_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "?"  # somebody else's folder: never reused
