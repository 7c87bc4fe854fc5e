"""The data-unit strategy interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from runmesh.catalog.repository import NewDataUnit, upsert_data_units
from runmesh.upload.context import UploadContext


class DataUnitWriter(ABC):
    """Upserts the planned units (idempotent per run and unit key) and returns their ids."""

    name: str = ""
    batch_size: int = 1

    async def write(
        self,
        ctx: UploadContext,
        units: Sequence[NewDataUnit],
        on_written: Callable[[int], None],
    ) -> list[int]:
        """Write `units` in chunks of `batch_size`; `on_written(n)` after each chunk."""
        ids: list[int] = []
        for start in range(0, len(units), self.batch_size):
            ctx.run.check_cancelled()
            chunk = units[start : start + self.batch_size]
            async with ctx.pool.acquire(timeout=30) as conn:
                ids += await upsert_data_units(
                    conn, ctx.tenant, ctx.params.data_collection, ctx.run_id, chunk
                )
            on_written(len(chunk))
        return ids

    @abstractmethod
    def describe(self) -> str:
        """A short phrase for the log."""
