"""`BaseToTask`: the to_task action: the pipeline over a project's data units."""

from __future__ import annotations

from typing import ClassVar

from runmesh.pipeline import Orchestrator
from runmesh.pipeline.resources import close_run_resources
from runmesh.plugins import Action
from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.params import ToTaskParams
from runmesh.to_task.steps.annotate import Annotate
from runmesh.to_task.steps.base import Step
from runmesh.to_task.steps.extract import Extract
from runmesh.to_task.steps.metrics import Metrics
from runmesh.to_task.steps.preprocess import Preprocess
from runmesh.to_task.steps.save import Save
from runmesh.to_task.steps.validate import Validate

LOG_MESSAGES = {
    "TO_TASK_STARTED": {"message": "to_task {!r} of project {} started", "level": "info"},
    "NO_DATA_UNITS": {"message": "no data unit matches the task filters {}", "level": "warning"},
    "TASKS_READY": {"message": "{} data units selected; {} tasks created", "level": "info"},
    "ANNOTATION_STARTED": {"message": "annotating {} tasks (format {})", "level": "info"},
    "ITEM_FAILED": {"message": "data unit {}: {}", "level": "warning"},
    "ANNOTATION_COMPLETED": {
        "message": "annotation done: {} annotated, {} skipped, {} failed",
        "level": "success",
    },
    "TO_TASK_FAILED": {"message": "to_task failed: {}", "level": "error"},
}


class BaseToTask(Action[ToTaskParams]):
    """Creates a project's tasks and pre-annotates them from each data unit's file, or with a
    registered model (`method: inference`).

    Subclass it in a plugin and override `steps()` to change the pipeline.
    """

    name = "to_task"
    params_model = ToTaskParams
    progress_categories: ClassVar = {
        "annotate_task_data": {"description": "Annotating tasks", "proportion": 100},
    }
    metrics_categories: ClassVar = {
        "annotation": "Tasks: stand_by, success, failed",
    }
    log_messages: ClassVar = LOG_MESSAGES

    def steps(self) -> list[Step]:
        """The pipeline, in order."""
        return [Validate(), Extract(), Preprocess(), Annotate(), Save(), Metrics()]

    async def start(self) -> dict[str, object]:
        """Run the pipeline; the result counts the tasks and lists the failed units."""
        params = self.params
        context = self.run.context
        if context.settings is None:
            raise RuntimeError("the to_task action needs the platform settings (run.context)")
        ctx = ToTaskContext(
            params=params,
            run=self.run,
            tenant=context.tenant,
            settings=context.settings,
            run_id=self.run.run_id,
        )
        try:
            await Orchestrator(self.steps(), close=_close_resources).run(ctx)
        except Exception as exc:
            self.run.log_message_with_code("TO_TASK_FAILED", exc)
            raise
        return {
            "tasks_created": ctx.tasks_created,
            "annotated": ctx.counts.success,
            "skipped": ctx.skipped,
            "failed": [
                {"data_unit_id": failure.data_unit_id, "reason": failure.reason}
                for failure in sorted(ctx.failures, key=lambda f: f.data_unit_id)
            ],
        }


async def _close_resources(ctx: ToTaskContext) -> None:
    await close_run_resources(ctx.uris.opened if ctx.uris is not None else [], ctx.pool)
