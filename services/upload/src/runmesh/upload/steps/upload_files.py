"""Upload files: stream every valid unit's files to `<tenant>/<collection>/<run_id>/…`."""

from __future__ import annotations

from pathlib import PurePosixPath

from runmesh.catalog.repository import DataFile
from runmesh.upload.context import Failure, UploadContext
from runmesh.upload.errors import UploadFailedError
from runmesh.upload.steps.base import Step
from runmesh.upload.strategies.upload import ConcurrentUpload, FileJob


class UploadFiles(Step):
    """Copies the files; a unit with a file that failed is left out, with the file's reason.

    No rollback of its own: `Initialize.rollback` deletes every object under the run's
    prefix, including those of an earlier attempt when this one failed before this step.
    """

    name = "upload_files"

    async def execute(self, ctx: UploadContext) -> None:
        """Upload with the concurrent strategy, reporting progress per file."""
        jobs = [
            FileJob(
                unit_key=unit.key,
                spec=spec,
                file=file,
                destination_path=_destination(ctx, spec, unit.key, file.path),
            )
            for unit in ctx.units
            for spec, file in unit.files.items()
        ]
        total = len(jobs)
        done = 0
        broken_units: dict[str, str] = {}
        ctx.run.set_progress(0, total, category="upload_data_files")

        def on_done(job: FileJob, info: DataFile | None, reason: str | None) -> None:
            nonlocal done
            done += 1
            ctx.data_files.stand_by -= 1
            if info is not None:
                ctx.uploaded[(job.unit_key, job.spec)] = info
                ctx.data_files.success += 1
            else:
                ctx.data_files.failed += 1
                ctx.failed_files.append(Failure(job.file.path, f"upload failed: {reason}"))
                broken_units.setdefault(job.unit_key, f"{job.file.path}: upload failed: {reason}")
            ctx.run.set_progress(done, total, category="upload_data_files")

        await ConcurrentUpload(ctx.params.max_concurrency).run(ctx, jobs, on_done)
        if broken_units:
            ctx.units = [unit for unit in ctx.units if unit.key not in broken_units]
            for key, reason in broken_units.items():
                ctx.failed_units.append(Failure(key, reason))
            ctx.data_units.failed += len(broken_units)
            ctx.data_units.stand_by -= len(broken_units)
        ctx.report_metrics()
        if ctx.data_files.success == 0:
            raise UploadFailedError(f"none of {total} files could be uploaded")
        skipped = f" ({ctx.skipped_present} already there)" if ctx.skipped_present else ""
        ctx.run.log_message(f"uploaded {ctx.data_files.success} of {total} files{skipped}")


def _destination(ctx: UploadContext, spec: str, unit_key: str, source_path: str) -> str:
    suffix = PurePosixPath(source_path).suffix
    return f"{ctx.destination_prefix}/{spec}/{unit_key}{suffix}"
