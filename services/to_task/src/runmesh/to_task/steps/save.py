"""Save: write the tasks' DM data, one statement per batch, marked with this run's id."""

from __future__ import annotations

from runmesh.catalog import annotation
from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.steps.base import Step


class Save(Step):
    """Stores the annotations; a task refused by the catalog is a per-item failure.

    Each batch is one UPDATE (the label schema is read once per batch, not once per task),
    and every written task records this run as the one that annotated it, so the gateway can
    list what a run pre-annotated.

    Rollback (a failed or cancelled run, not a worker shutdown) clears the data of the tasks
    this run filled that were empty before, so they are as the run found them. Tasks it
    overwrote (`overwrite`) keep the new data: their previous data is not kept by the run.
    """

    name = "save"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Write `ctx.annotated` in batches of `batch_size`."""
        size = ctx.params.batch_size
        async with ctx.pool.acquire(timeout=30) as conn:
            for start in range(0, len(ctx.annotated), size):
                ctx.run.check_cancelled()
                batch = ctx.annotated[start : start + size]
                written, refused = await annotation.set_tasks_data(
                    conn,
                    ctx.tenant,
                    ctx.params.project,
                    [(item.task_id, item.data) for item in batch],
                    run_id=ctx.run_id,
                )
                for item in batch:
                    if item.task_id in written:
                        ctx.counts.success += 1
                        if not item.had_data:
                            ctx.saved_task_ids.append(item.task_id)
                    else:
                        ctx.fail(item.data_unit_id, refused[item.task_id])
                ctx.report_metrics()

    async def rollback(self, ctx: ToTaskContext) -> None:
        """Clear what this run wrote into tasks that had no data before it."""
        if not ctx.saved_task_ids:
            return
        async with ctx.pool.acquire(timeout=30) as conn:
            await annotation.set_tasks_data(
                conn,
                ctx.tenant,
                ctx.params.project,
                [(task_id, None) for task_id in ctx.saved_task_ids],
                run_id=None,
            )
        ctx.run.log_message(
            f"cleared the annotations this run saved into {len(ctx.saved_task_ids)} tasks",
            level="warning",
        )
        ctx.saved_task_ids.clear()
