"""`BaseUploader`: the upload action as a template with hooks a user plugin can override."""

from __future__ import annotations

from typing import ClassVar

from runmesh.pipeline import PipelineAction, RunResources
from runmesh.storage import ObjectInfo
from runmesh.upload.context import PlannedUnit, SourceFile, UploadContext
from runmesh.upload.params import UploadParams
from runmesh.upload.resources import open_upload_storages
from runmesh.upload.steps.analyze_collection import AnalyzeCollection
from runmesh.upload.steps.base import Step
from runmesh.upload.steps.cleanup import Cleanup
from runmesh.upload.steps.generate_data_units import GenerateDataUnits
from runmesh.upload.steps.initialize import Initialize
from runmesh.upload.steps.organize_files import OrganizeFiles
from runmesh.upload.steps.process_metadata import ProcessMetadata
from runmesh.upload.steps.upload_files import UploadFiles
from runmesh.upload.steps.validate_files import ValidateFiles


class BaseUploader(PipelineAction[UploadParams, UploadContext]):
    """Uploads a folder tree (or one folder per specification) and registers data units.

    Subclass it in a plugin and override `organize_files`, `validate_files`, `before_upload`
    or `after_upload`; `steps()` returns the pipeline if a plugin needs to change it. The
    catalog pool and both storages are open before the first step and closed after the last.
    A worker that dies or shuts down mid-run rolls back nothing: the next attempt resumes
    (objects already there are kept, units upserted).
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

    async def open_context(self, resources: RunResources) -> UploadContext:
        """Open the source and destination storages; the context the first step gets."""
        storages = await open_upload_storages(resources, self.params)
        return UploadContext(
            params=self.params,
            run=self.run,
            tenant=resources.tenant,
            settings=resources.settings,
            run_id=resources.run_id,
            pool=resources.pool,
            source=storages.source,
            source_name=storages.source_name,
            destination=storages.destination,
            hooks=self,
        )

    def result(self, ctx: UploadContext) -> dict[str, object]:
        """What succeeded, what failed, and where the files went."""
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
