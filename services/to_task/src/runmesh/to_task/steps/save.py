"""Save: write each task's DM data, one transaction per batch, one savepoint per task."""

from __future__ import annotations

from runmesh.common.catalog import annotation
from runmesh.common.catalog.errors import UnknownClassError
from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.steps.base import Step


class Save(Step):
    """Stores the annotations; a task refused by the catalog is a per-item failure.

    Rollback (a failed or cancelled run, not a worker shutdown) clears the data of the tasks
    this run filled that were empty before, so they are as the run found them. Tasks it
    overwrote (`overwrite`) keep the new data: their previous data is not kept by the run.
    """

    name = "save"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Write `ctx.annotated` in batches of `batch_size`."""
        assert ctx.pool is not None
        size = ctx.params.batch_size
        async with ctx.pool.acquire(timeout=30) as conn:
            for start in range(0, len(ctx.annotated), size):
                ctx.run.check_cancelled()
                batch = ctx.annotated[start : start + size]
                written: list[int] = []
                async with conn.transaction():
                    for item in batch:
                        try:
                            async with conn.transaction():  # a savepoint: one task's failure
                                row = await annotation.set_task_data(
                                    conn, ctx.tenant, item.task_id, item.data
                                )
                        except UnknownClassError as exc:  # the label schema changed meanwhile
                            ctx.fail(item.data_unit_id, str(exc))
                            continue
                        if row is None:
                            ctx.fail(item.data_unit_id, f"task {item.task_id} no longer exists")
                            continue
                        ctx.counts.success += 1
                        if not item.had_data:
                            written.append(item.task_id)
                ctx.saved_task_ids.extend(written)  # only once the batch committed
                ctx.report_metrics()

    async def rollback(self, ctx: ToTaskContext) -> None:
        """Clear what this run wrote into tasks that had no data before it."""
        if ctx.pool is None or not ctx.saved_task_ids:
            return
        async with ctx.pool.acquire(timeout=30) as conn, conn.transaction():
            for task_id in ctx.saved_task_ids:
                await annotation.set_task_data(conn, ctx.tenant, task_id, None)
        ctx.run.log_message(
            f"cleared the annotations this run saved into {len(ctx.saved_task_ids)} tasks",
            level="warning",
        )
        ctx.saved_task_ids.clear()
