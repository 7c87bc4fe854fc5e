"""Organize files: group the discovered files into data units by stem."""

from __future__ import annotations

from pathlib import PurePosixPath

from runmesh.upload.context import Failure, PlannedUnit, UploadContext
from runmesh.upload.steps.base import Step


class OrganizeFiles(Step):
    """Fills `ctx.units`: one unit per stem, one file per specification, meta from Excel.

    A file no specification accepts, or a second file for a specification a unit already has,
    is reported as failed, never silently dropped.
    """

    name = "organize_files"

    async def execute(self, ctx: UploadContext) -> None:
        """Group, let the plugin's `organize_files` hook adjust, attach meta."""
        units: dict[str, PlannedUnit] = {}
        accepted = "; ".join(
            f"{spec.name}: {', '.join(spec.extensions)}"
            for spec in ctx.specs.values()
            if spec.extensions
        )
        for file in ctx.discovered:
            if file.spec is None:
                extension = PurePosixPath(file.path).suffix or "(none)"
                ctx.failed_files.append(
                    Failure(
                        file.path,
                        f"no file specification accepts extension {extension} "
                        f"(the collection's: {accepted or 'none'})",
                    )
                )
                continue
            unit = units.setdefault(file.unit_key, PlannedUnit(key=file.unit_key, files={}))
            if file.spec in unit.files:
                ctx.failed_files.append(
                    Failure(
                        file.path,
                        f"unit {unit.key!r} already has {unit.files[file.spec].path} "
                        f"for specification {file.spec!r}",
                    )
                )
                continue
            unit.files[file.spec] = file
        planned = list(units.values())
        if ctx.hooks is not None:
            planned = ctx.hooks.organize_files(planned)
        for unit in planned:
            unit.meta = {**ctx.metadata.get(PurePosixPath(unit.key).name, {}), **unit.meta}
        ctx.units = planned
        ctx.run.log_message(f"{len(planned)} data units from {len(ctx.discovered)} files")
