"""`BaseExporter`: the export action as a template with hooks a user plugin overrides."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from runmesh.converters import WRITERS, DatasetWriter
from runmesh.core.errors import RunCancelledError
from runmesh.export.context import ExportContext, ItemData
from runmesh.export.params import ExportParams
from runmesh.export.resources import open_export_resources
from runmesh.export.steps.base import Step
from runmesh.export.steps.convert_items import ConvertItems
from runmesh.export.steps.initialize import Initialize
from runmesh.export.steps.save_files import SaveFiles
from runmesh.export.steps.setup_output_directories import SetupOutputDirectories
from runmesh.pipeline import PipelineAction, RunResources

LOG_MESSAGES = {
    "EXPORT_STARTED": {"message": "export {!r} of {} started", "level": "info"},
    "NO_RESULTS_FOUND": {"message": "no {} matches the filter {}", "level": "warning"},
    "RESULTS_RETRIEVED": {"message": "{} items ({}) to export", "level": "info"},
    "CONVERSION_STARTED": {"message": "converting {} items to {}", "level": "info"},
    "NULL_DATA_DETECTED": {"message": "{} has no annotation data: skipped", "level": "warning"},
    "ORIGINAL_NOT_COPIED": {
        "message": "original file of {} not copied (its annotations are exported): {}",
        "level": "warning",
    },
    "MORE_ORIGINALS_NOT_COPIED": {
        "message": "{} more original files not copied: every one is in error_file_list.json",
        "level": "warning",
    },
    "CONVERSION_COMPLETED": {
        "message": "conversion done: {} converted, {} failed, {} skipped",
        "level": "info",
    },
    "FILES_SAVED": {"message": "{} files saved into {}", "level": "info"},
    "EXPORT_COMPLETED": {"message": "export completed: {}", "level": "success"},
    "EXPORT_FAILED": {"message": "export failed: {}", "level": "error"},
}


class BaseExporter(PipelineAction[ExportParams, ExportContext]):
    """Exports tasks, assignments or ground truth as DM, COCO, YOLO or Pascal VOC.

    Subclass it in a plugin and override `before_convert`, `convert_data`, `after_convert`
    (return None to skip an item), `make_writer` (another output format) or
    `additional_file_saving`; `steps()` returns the pipeline if a plugin needs to change it.
    The catalog pool, the destination storage and the staging folder are open before the first
    step and closed after the last.
    """

    name = "export"
    params_model = ExportParams
    progress_categories: ClassVar = {
        "dataset_conversion": {"description": "Converting and saving items", "proportion": 100},
    }
    metrics_categories: ClassVar = {
        "data_file": "Annotation files: stand_by, success, failed",
        "original_file": "Original files: stand_by, success, failed",
    }
    log_messages: ClassVar = LOG_MESSAGES

    def steps(self) -> list[Step]:
        """The pipeline, in order."""
        return [Initialize(), SetupOutputDirectories(), ConvertItems(), SaveFiles()]

    async def start(self) -> dict[str, object]:
        """Run the pipeline; the result says where the export is and what it holds."""
        result = await super().start()
        self.run.log_message_with_code("EXPORT_COMPLETED", result["uri"])
        return result

    def on_failure(self, exc: Exception) -> None:
        """`EXPORT_FAILED`, unless the run was cancelled: it ends cancelled, not failed."""
        if not isinstance(exc, RunCancelledError):
            self.run.log_message_with_code("EXPORT_FAILED", exc)

    async def open_context(self, resources: RunResources) -> ExportContext:
        """Open the destination, the tenant's URIs and the staging folder; the context the
        first step gets."""
        params = self.params
        self.run.log_message_with_code("EXPORT_STARTED", params.name, params.target)
        opened = await open_export_resources(resources, params)
        return ExportContext(
            params=params,
            run=self.run,
            tenant=resources.tenant,
            settings=resources.settings,
            run_id=resources.run_id,
            hooks=self,
            staging=opened.staging,
            pool=resources.pool,
            destination=opened.destination,
            destination_name=opened.destination_name,
            uris=opened.uris,
        )

    def result(self, ctx: ExportContext) -> dict[str, object]:
        """Where the export is, in which format, and what it holds."""
        params = ctx.params
        return {
            "path": ctx.export_dir,
            "uri": ctx.destination.url(ctx.export_dir),
            "format": params.extra_params.output_format,
            "splits": sorted(ctx.writers) if params.extra_params.split else None,
            "items": {
                "total": ctx.total,
                "exported": ctx.data_files.success,
                "failed": ctx.data_files.failed,
                "skipped": ctx.skipped,
            },
            "data_file": ctx.data_files.as_metrics(),
            "original_file": ctx.original_files.as_metrics(),
            "conversion_issues": ctx.conversion_issues,
        }

    # -- hooks (the BaseExporter template) ----------------------------------------------------
    def before_convert(self, data: ItemData) -> ItemData:
        """Prepare an item before conversion (default: as it is)."""
        return data

    def convert_data(self, data: ItemData) -> ItemData:
        """Turn the item's data into what is saved; its `data` must stay DM (default: as is)."""
        return data

    def after_convert(self, data: ItemData) -> ItemData | None:
        """Post-process a converted item; None skips it (default: as it is)."""
        return data

    def make_writer(self, root: Path, classes: list[str]) -> DatasetWriter:
        """The writer of `extra_params.output_format` for one split's folder."""
        params = self.params
        return WRITERS[params.extra_params.output_format](root, classes)

    def additional_file_saving(self, ctx: ExportContext) -> None:
        """Write extra files into `ctx.staging` once every item is saved (default: none)."""
