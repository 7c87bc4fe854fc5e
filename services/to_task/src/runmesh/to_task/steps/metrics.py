"""Metrics: the final `annotation` metrics, the progress at 100 %, and the summary log."""

from __future__ import annotations

from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.steps.base import Step


class Metrics(Step):
    """Reports what the run did; failures are listed in the result, not raised."""

    name = "metrics"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Send the last metrics and progress, and log failures one by one (the first 100)."""
        total = len(ctx.items)
        ctx.counts.stand_by = 0
        ctx.report_metrics()
        ctx.run.set_progress(total, total, category="annotate_task_data")
        ctx.run.flush_progress(force=True)
        for failure in ctx.failures[:100]:
            ctx.run.log_message_with_code(
                "ITEM_FAILED", failure.data_unit_id, failure.reason, level="warning"
            )
        ctx.run.log_message_with_code(
            "ANNOTATION_COMPLETED", ctx.counts.success, ctx.skipped, ctx.counts.failed
        )
