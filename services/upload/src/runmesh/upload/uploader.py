"""`BaseUploader`: the upload action as a template with hooks a user plugin can override."""

from __future__ import annotations

from typing import ClassVar

from runmesh.plugins import Action
from runmesh.storage import ObjectInfo
from runmesh.upload.context import PlannedUnit, SourceFile, UploadContext
from runmesh.upload.orchestrator import Orchestrator
from runmesh.upload.params import UploadParams
from runmesh.upload.steps.analyze_collection import AnalyzeCollection
from runmesh.upload.steps.base import Step
from runmesh.upload.steps.cleanup import Cleanup
from runmesh.upload.steps.generate_data_units import GenerateDataUnits
from runmesh.upload.steps.initialize import Initialize
from runmesh.upload.steps.organize_files import OrganizeFiles
from runmesh.upload.steps.process_metadata import ProcessMetadata
from runmesh.upload.steps.upload_files import UploadFiles
from runmesh.upload.steps.validate_files import ValidateFiles


class BaseUploader(Action[UploadParams]):
    """Uploads a folder tree (or one folder per specification) and registers data units.

    Subclass it in a plugin and override `organize_files`, `validate_files`, `before_upload`
    or `after_upload`; `steps()` returns the pipeline if a plugin needs to change it.
    """

    name = "upload"
    params_model = UploadParams
    progress_categories: ClassVar = {
        "analyze_collection": {"description": "Analyzing the collection", "proportion": 2},
        "upload_data_files": {"description": "Uploading files", "proportion": 38},
        "generate_data_units": {"description": "Creating data units", "proportion": 60},
    }
    metrics_categories: ClassVar = {
        "data_file": "Files: stand_by, success, failed",
        "data_unit": "Data units: stand_by, success, failed",
    }

    def steps(self) -> list[Step]:
        """The pipeline, in order."""
        return [
            Initialize(),
            ProcessMetadata(),
            AnalyzeCollection(),
            OrganizeFiles(),
            ValidateFiles(),
            UploadFiles(),
            GenerateDataUnits(),
            Cleanup(),
        ]

    async def start(self) -> dict[str, object]:
        """Run the pipeline; the result counts what succeeded and lists what failed."""
        params = self.params
        context = self.run.context
        if context.settings is None:
            raise RuntimeError("the upload action needs the platform settings (run.context)")
        ctx = UploadContext(
            params=params,
            run=self.run,
            tenant=context.tenant,
            settings=context.settings,
            run_id=self.run.run_id,
            hooks=self,
        )
        await Orchestrator(self.steps()).run(ctx)
        ids = sorted(ctx.unit_ids)
        return {
            "data_files": {
                "success": ctx.data_files.success,
                "failed": len(ctx.failed_files),
                "already_uploaded": ctx.skipped_present,
            },
            "data_units": {"success": len(ids), "failed": len(ctx.failed_units)},
            "data_unit_ids": {"first": ids[0], "last": ids[-1], "count": len(ids)} if ids else None,
            "failed_files": [failure.as_dict() for failure in ctx.failed_files],
            "failed_units": [failure.as_dict() for failure in ctx.failed_units],
            "destination": ctx.destination_prefix,
        }

    # -- hooks (the BaseUploader template) ----------------------------------------------------
    def organize_files(self, units: list[PlannedUnit]) -> list[PlannedUnit]:
        """Adjust the grouped units before validation (default: as grouped)."""
        return units

    def validate_files(self, unit: PlannedUnit) -> str | None:
        """An extra check of one unit: why it is invalid, or None (default: no extra check)."""
        return None

    def before_upload(self, file: SourceFile) -> None:
        """Called before each file is copied."""

    def after_upload(self, file: SourceFile, stored: ObjectInfo) -> None:
        """Called after each file is copied (or found already uploaded)."""
