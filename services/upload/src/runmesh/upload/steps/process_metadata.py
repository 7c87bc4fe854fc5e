"""Process metadata: meta per file stem from the Excel workbook, when the params name one."""

from __future__ import annotations

from pathlib import PurePosixPath

from runmesh.upload.context import UploadContext
from runmesh.upload.steps.base import Step
from runmesh.upload.strategies.metadata import ExcelMetadata, MetadataSource, NoMetadata


class ProcessMetadata(Step):
    """Loads `ctx.metadata` with the `excel` or `none` strategy."""

    name = "process_metadata"

    async def execute(self, ctx: UploadContext) -> None:
        """Read the workbook (size and row limits apply) before any file moves."""
        source = self.strategy(ctx)
        ctx.metadata = await source.load(ctx.source)
        if isinstance(source, ExcelMetadata) and source.found_path is not None:
            ctx.excluded_paths.add(source.found_path)
        if ctx.metadata:
            ctx.run.log_message(f"metadata for {len(ctx.metadata)} files from Excel")

    @staticmethod
    def strategy(ctx: UploadContext) -> MetadataSource:
        """`excel` when `excel_metadata_path` is set: storage-relative, else relative to `path`."""
        path = ctx.params.excel_metadata_path
        if path is None:
            return NoMetadata()
        candidates = [path.lstrip("/")]
        if ctx.params.path:
            candidates.append(str(PurePosixPath(ctx.params.path) / path))
        return ExcelMetadata(candidates)
