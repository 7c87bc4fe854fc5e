"""Store the per-image files the format writers emitted, straight into the destination.

Writers hand label files and per-image JSON to their `outlet` instead of the staging folder,
so each such file is written once, where it belongs, in batches (`Storage.write_many`).
"""

from __future__ import annotations

from runmesh.export.context import ExportContext
from runmesh.export.errors import ExportWriteError
from runmesh.storage import StorageError

_BATCH_FILES = 2000
_BATCH_BYTES = 16 << 20  # what the outlets may hold before they are stored


async def store_emitted(ctx: ExportContext, *, force: bool = False) -> None:
    """Drain the writers' outlets into `<export folder>/<split>/…` once they hold a batch
    (always with `force`); a file the destination refuses fails the run.

    Batches of thousands make the storage's per-call cost (the file provider's one sync)
    small per file; the bound keeps memory flat in the item count.
    """
    held = [item for writer in ctx.writers.values() for item in writer.outlet or ()]
    if not force and (
        len(held) < _BATCH_FILES and sum(len(data) for _, data in held) < _BATCH_BYTES
    ):
        return
    batch: list[tuple[str, bytes]] = []
    for split, writer in ctx.writers.items():
        if not writer.outlet:
            continue
        prefix = f"{split}/" if split else ""
        batch.extend((prefix + relative, data) for relative, data in writer.outlet)
        writer.outlet = []
    raise_failures(await store_batch(ctx, batch))


async def store_batch(ctx: ExportContext, files: list[tuple[str, bytes]]) -> list[str]:
    """Store files (paths relative to the export folder) in one `write_many`; what the
    destination refused, as `path: reason`."""
    if not files:
        return []
    targets = [(f"{ctx.export_dir}/{relative}", data) for relative, data in files]
    outcomes = await ctx.destination.write_many(targets, concurrency=ctx.params.max_concurrency)
    return [
        f"{relative}: {outcome}"
        for (relative, _), outcome in zip(files, outcomes, strict=True)
        if isinstance(outcome, StorageError)
    ]


def raise_failures(failures: list[str]) -> None:
    """Fail the run when the destination refused any export file."""
    if failures:
        shown = "; ".join(failures[:5])
        raise ExportWriteError(f"{len(failures)} export files could not be stored: {shown}")
