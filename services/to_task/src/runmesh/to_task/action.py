"""`BaseToTask`: the to_task action: the pipeline over a project's data units."""

from __future__ import annotations

from typing import ClassVar

from runmesh.pipeline import PipelineAction, RunResources
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


class BaseToTask(PipelineAction[ToTaskParams, ToTaskContext]):
    """Creates a project's tasks and pre-annotates them from each data unit's file, or with a
    registered model (`method: inference`).

    Subclass it in a plugin and override `steps()` to change the pipeline. The catalog pool and
    the tenant's storages are open before the first step and closed after the last.
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

    def on_failure(self, exc: Exception) -> None:
        """`TO_TASK_FAILED`, naming what failed."""
        self.run.log_message_with_code("TO_TASK_FAILED", exc)

    async def open_context(self, resources: RunResources) -> ToTaskContext:
        """Open the tenant's storages by URI; the context the first step gets."""
        params = self.params
        self.run.log_message_with_code("TO_TASK_STARTED", params.name, params.project)
        return ToTaskContext(
            params=params,
            run=self.run,
            tenant=resources.tenant,
            settings=resources.settings,
            run_id=resources.run_id,
            pool=resources.pool,
            # Units' files and the predictions are read only through the tenant's storages.
            uris=await resources.tenant_uris(),
        )

    def result(self, ctx: ToTaskContext) -> dict[str, object]:
        """The tasks created and annotated, and the units that failed."""
        return {
            "tasks_created": ctx.tasks_created,
            "annotated": ctx.counts.success,
            "skipped": ctx.skipped,
            "failed": [
                {"data_unit_id": failure.data_unit_id, "reason": failure.reason}
                for failure in sorted(ctx.failures, key=lambda f: f.data_unit_id)
            ],
        }
