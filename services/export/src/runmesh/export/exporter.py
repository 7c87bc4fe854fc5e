"""`BaseExporter`: the export action as a template with hooks a user plugin overrides."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from runmesh.converters import WRITERS, DatasetWriter
from runmesh.core.errors import RunCancelledError
from runmesh.export.context import ExportContext, ItemData
from runmesh.export.params import ExportParams
from runmesh.export.steps.base import Step
from runmesh.export.steps.convert_items import ConvertItems
from runmesh.export.steps.initialize import Initialize
from runmesh.export.steps.save_files import SaveFiles
from runmesh.export.steps.setup_output_directories import SetupOutputDirectories
from runmesh.pipeline import Orchestrator
from runmesh.pipeline.resources import close_run_resources
from runmesh.plugins import Action

LOG_MESSAGES = {
    "EXPORT_STARTED": {"message": "export {!r} of {} started", "level": "info"},
    "NO_RESULTS_FOUND": {"message": "no {} matches the filter {}", "level": "warning"},
    "RESULTS_RETRIEVED": {"message": "{} items ({}) to export", "level": "info"},
    "CONVERSION_STARTED": {"message": "converting {} items to {}", "level": "info"},
    "NULL_DATA_DETECTED": {"message": "{} has no annotation data: skipped", "level": "warning"},
    "CONVERSION_COMPLETED": {
        "message": "conversion done: {} converted, {} failed, {} skipped",
        "level": "info",
    },
    "FILES_SAVED": {"message": "{} files saved into {}", "level": "info"},
    "EXPORT_COMPLETED": {"message": "export completed: {}", "level": "success"},
    "EXPORT_FAILED": {"message": "export failed: {}", "level": "error"},
}


class BaseExporter(Action[ExportParams]):
    """Exports tasks, assignments or ground truth as DM, COCO, YOLO or Pascal VOC.

    Subclass it in a plugin and override `before_convert`, `convert_data`, `after_convert`
    (return None to skip an item), `make_writer` (another output format) or
    `additional_file_saving`; `steps()` returns the pipeline if a plugin needs to change it.
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
        params = self.params
        context = self.run.context
        if context.settings is None:
            raise RuntimeError("the export action needs the platform settings (run.context)")
        with tempfile.TemporaryDirectory(prefix="runmesh-export-") as staging:
            ctx = ExportContext(
                params=params,
                run=self.run,
                tenant=context.tenant,
                settings=context.settings,
                run_id=self.run.run_id,
                hooks=self,
                staging=Path(staging),
            )
            try:
                await Orchestrator(self.steps(), close=_close_resources).run(ctx)
            except RunCancelledError:
                raise  # the run ends cancelled, not failed
            except Exception as exc:
                self.run.log_message_with_code("EXPORT_FAILED", exc)
                raise
        assert ctx.destination is not None
        result: dict[str, object] = {
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
        self.run.log_message_with_code("EXPORT_COMPLETED", result["uri"])
        return result

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


async def _close_resources(ctx: ExportContext) -> None:
    opened = ctx.uris.opened if ctx.uris is not None else []
    await close_run_resources([*opened, ctx.destination], ctx.pool)
