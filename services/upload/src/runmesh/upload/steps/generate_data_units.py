"""Generate data units: upsert the uploaded units into the catalog, in batches."""

from __future__ import annotations

from runmesh.catalog.repository import NewDataUnit
from runmesh.upload.context import UploadContext
from runmesh.upload.steps.base import Step
from runmesh.upload.strategies.data_unit import writer_for


class GenerateDataUnits(Step):
    """One row per unit, keyed by (run, unit key): a re-executed run updates, never duplicates.

    No rollback of its own: `Initialize.rollback` deletes the run's units, including those
    of an earlier attempt when this one failed before this step.
    """

    name = "generate_data_units"

    async def execute(self, ctx: UploadContext) -> None:
        """Write with the `single` or `batch` strategy, reporting progress per chunk."""
        units = [
            NewDataUnit(
                unit_key=unit.key,
                files={spec: ctx.uploaded[(unit.key, spec)] for spec in unit.files},
                meta=unit.meta,
            )
            for unit in ctx.units
        ]
        writer = writer_for(ctx.params.creating_data_unit_batch_size)
        written = 0
        ctx.run.set_progress(0, len(units), category="generate_data_units")

        def on_written(count: int) -> None:
            nonlocal written
            written += count
            ctx.data_units.success += count
            ctx.data_units.stand_by -= count
            ctx.run.set_progress(written, len(units), category="generate_data_units")

        ctx.unit_ids = await writer.write(ctx, units, on_written)
        ctx.report_metrics()
        ctx.run.log_message(f"created {len(ctx.unit_ids)} data units ({writer.describe()})")
