"""One data unit per statement (Synapse's `creating_data_unit_batch_size=1`)."""

from __future__ import annotations

from runmesh.upload.strategies.data_unit.base import DataUnitWriter


class SingleWriter(DataUnitWriter):
    """Each unit in its own upsert."""

    name = "single"
    batch_size = 1

    def describe(self) -> str:
        """For the log."""
        return "one unit per statement"
