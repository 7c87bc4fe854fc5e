"""Cleanup: the summary of the upload (the run's resources are closed after the pipeline)."""

from __future__ import annotations

from runmesh.core.events import LogLevel
from runmesh.upload.context import UploadContext
from runmesh.upload.steps.base import Step


class Cleanup(Step):
    """Logs what happened; failed files and units were reported as they were found."""

    name = "cleanup"

    async def execute(self, ctx: UploadContext) -> None:
        """One closing line."""
        level: LogLevel = "success" if not ctx.failed_files else "warning"
        ctx.run.log_message(
            f"upload done: {ctx.data_units.success} data units, {ctx.data_files.success} files; "
            f"{len(ctx.failed_units)} units and {len(ctx.failed_files)} files failed",
            level=level,
        )
