"""Data units in batches: one upsert statement per `creating_data_unit_batch_size` units."""

from __future__ import annotations

from runmesh.upload.strategies.data_unit.base import DataUnitWriter


class BatchWriter(DataUnitWriter):
    """Units upserted `batch_size` at a time."""

    name = "batch"

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def describe(self) -> str:
        """For the log."""
        return f"batches of {self.batch_size}"
