"""Validate files: required specifications present, extensions and sizes within bounds."""

from __future__ import annotations

from pathlib import PurePosixPath

from jsonschema import Draft202012Validator

from runmesh.upload.context import Failure, PlannedUnit, UploadContext
from runmesh.upload.errors import NothingToUploadError
from runmesh.upload.steps.base import Step


class ValidateFiles(Step):
    """Keeps the valid units in `ctx.units`; each invalid one is reported with its reason and
    so is each of its files. The run fails only when no unit is left."""

    name = "validate_files"

    async def execute(self, ctx: UploadContext) -> None:
        """Check every unit; report metrics of what will be uploaded."""
        valid: list[PlannedUnit] = []
        schema = ctx.collection.data_unit_meta_schema if ctx.collection is not None else None
        meta_validator = Draft202012Validator(schema) if schema else None
        for unit in ctx.units:
            reason = self.problem(ctx, unit)
            if reason is None and meta_validator is not None:
                reason = _meta_problem(meta_validator, unit)
            if reason is None and ctx.hooks is not None:
                reason = ctx.hooks.validate_files(unit)
            if reason is None:
                valid.append(unit)
                continue
            ctx.failed_units.append(Failure(unit.key, reason))
            for file in unit.files.values():
                ctx.failed_files.append(Failure(file.path, f"unit {unit.key!r}: {reason}"))
        ctx.units = valid
        ctx.data_files.failed = len(ctx.failed_files)
        ctx.data_files.stand_by = sum(len(unit.files) for unit in valid)
        ctx.data_units.failed = len(ctx.failed_units)
        ctx.data_units.stand_by = len(valid)
        ctx.report_metrics()
        for failure in ctx.failed_files:
            ctx.run.log_message(f"skipped {failure.item}: {failure.reason}", level="warning")
        if not valid:
            raise NothingToUploadError(
                f"no valid data unit among {len(ctx.discovered)} files "
                f"({len(ctx.failed_units)} invalid units, {len(ctx.failed_files)} files refused)"
            )

    @staticmethod
    def problem(ctx: UploadContext, unit: PlannedUnit) -> str | None:
        """Why `unit` cannot be uploaded, or None."""
        missing = sorted(
            name for name, spec in ctx.specs.items() if spec.required and name not in unit.files
        )
        if missing:
            return f"missing required file specification(s) {', '.join(missing)}"
        for name, file in unit.files.items():
            spec = ctx.specs[name]
            extension = PurePosixPath(file.path).suffix.lower()
            if spec.extensions and extension not in spec.extensions:
                allowed = ", ".join(spec.extensions)
                shown = extension or "(none)"
                return f"{file.path}: extension {shown} not allowed for {name} ({allowed})"
            if file.size > ctx.params.max_file_bytes:
                return (
                    f"{file.path}: {file.size} bytes, over max_file_size_mb="
                    f"{ctx.params.max_file_size_mb:g}"
                )
        return None


def _meta_problem(validator: Draft202012Validator, unit: PlannedUnit) -> str | None:
    """Why the unit's meta does not match the collection's `data_unit_meta_schema`, or None."""
    error = next(iter(validator.iter_errors(unit.meta)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(meta)"
    return f"meta does not match the collection's data_unit_meta_schema: {where}: {error.message}"
