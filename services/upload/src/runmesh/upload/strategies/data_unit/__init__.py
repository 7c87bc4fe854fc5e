"""How data units are written: one per statement (`single`) or in batches (`batch`)."""

from __future__ import annotations

from runmesh.upload.strategies.data_unit.base import DataUnitWriter
from runmesh.upload.strategies.data_unit.batch import BatchWriter
from runmesh.upload.strategies.data_unit.single import SingleWriter


def writer_for(batch_size: int) -> DataUnitWriter:
    """`single` for a batch size of 1, `batch` above."""
    return SingleWriter() if batch_size == 1 else BatchWriter(batch_size)


__all__ = ["BatchWriter", "DataUnitWriter", "SingleWriter", "writer_for"]
