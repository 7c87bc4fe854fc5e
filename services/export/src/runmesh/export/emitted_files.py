"""Store the per-image files the format writers emitted, straight into the destination.

Writers hand label files and per-image JSON to their `outlet` instead of the staging folder,
so each such file is written once, where it belongs, in batches (`Storage.write_many`).
"""

from __future__ import annotations

from runmesh.common.storage import StorageError
from runmesh.export.context import ExportContext
from runmesh.export.errors import ExportWriteError


async def store_emitted(ctx: ExportContext) -> None:
    """Drain every writer's outlet into `<export folder>/<split>/…`; refusals fail the run."""
    assert ctx.destination is not None
    batch: list[tuple[str, bytes]] = []
    for split, writer in ctx.writers.items():
        if not writer.outlet:
            continue
        prefix = f"{ctx.export_dir}/{split}/" if split else f"{ctx.export_dir}/"
        batch.extend((prefix + relative, data) for relative, data in writer.outlet)
        writer.outlet = []
    if not batch:
        return
    outcomes = await ctx.destination.write_many(batch, concurrency=ctx.params.max_concurrency)
    failures = [
        f"{path}: {outcome}"
        for (path, _), outcome in zip(batch, outcomes, strict=True)
        if isinstance(outcome, StorageError)
    ]
    if failures:
        shown = "; ".join(failures[:5])
        raise ExportWriteError(f"{len(failures)} export files could not be stored: {shown}")
    ctx.stored_paths.extend(path for path, _ in batch)
