"""Concurrent upload: a bounded pool of streams, resumable, one bad file failing only itself."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from runmesh.catalog.repository import DataFile
from runmesh.core.errors import RunCancelledError
from runmesh.storage import ObjectInfo, Storage, StorageError, StorageNotFound
from runmesh.upload.context import SourceFile, UploadContext


@dataclass(slots=True, frozen=True)
class FileJob:
    """One file to copy: the unit and specification it belongs to, and where it goes."""

    unit_key: str
    spec: str
    file: SourceFile
    destination_path: str


class ConcurrentUpload:
    """Copies files source → destination with at most `concurrency` streams at once.

    A file already at its destination with the same checksum (an earlier attempt of this run
    uploaded it) is not sent again. A file that fails is reported with its reason; the others
    go on. Cancellation is checked between chunks, so a large file stops promptly.
    """

    name = "concurrent"

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._present: dict[str, ObjectInfo] = {}

    async def run(
        self,
        ctx: UploadContext,
        jobs: list[FileJob],
        on_done: Callable[[FileJob, DataFile | None, str | None], None],
    ) -> None:
        """Upload every job; `on_done(job, uploaded file info | None, failure reason | None)`."""
        queue: asyncio.Queue[FileJob | None] = asyncio.Queue(maxsize=2 * self._concurrency)
        # One listing instead of a HEAD per file: on a first attempt nothing is there yet.
        self._present = {
            info.path: info
            async for info in ctx.destination.list(ctx.destination_prefix, recursive=True)
        }
        workers = min(self._concurrency, max(1, len(jobs)))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._worker(ctx, queue, on_done))
                for job in jobs:
                    ctx.run.check_cancelled()
                    await queue.put(job)
                for _ in range(workers):
                    await queue.put(None)
        except ExceptionGroup as failed:
            cancelled = [e for e in failed.exceptions if isinstance(e, RunCancelledError)]
            raise (cancelled or failed.exceptions)[0] from None

    async def _worker(
        self,
        ctx: UploadContext,
        queue: asyncio.Queue[FileJob | None],
        on_done: Callable[[FileJob, DataFile | None, str | None], None],
    ) -> None:
        while (job := await queue.get()) is not None:
            ctx.run.check_cancelled()
            try:
                info = await self._upload(ctx, job)
            except StorageError as exc:
                on_done(job, None, str(exc))
            else:
                on_done(job, info, None)

    async def _upload(self, ctx: UploadContext, job: FileJob) -> DataFile:
        hooks = ctx.hooks
        if hooks is not None:
            hooks.before_upload(job.file)
        media_type = mimetypes.guess_type(job.file.path)[0]
        stored = await self._already_there(ctx.source, ctx.destination, job, self._present)
        if stored is not None:
            ctx.skipped_present += 1
        else:
            chunks = _cancellable(ctx, ctx.source.read(job.file.path))
            stored = await ctx.destination.write(
                job.destination_path, chunks, media_type=media_type
            )
        if hooks is not None:
            hooks.after_upload(job.file, stored)
        return DataFile(
            uri=ctx.destination.url(job.destination_path),
            size=stored.size,
            checksum=stored.checksum,
            media_type=stored.media_type or media_type,
        )

    @staticmethod
    async def _already_there(
        source: Storage, destination: Storage, job: FileJob, present: dict[str, ObjectInfo]
    ) -> ObjectInfo | None:
        """The destination object when an earlier attempt stored this very file, else None."""
        listed = present.get(job.destination_path)
        if listed is None or listed.size != job.file.size:
            return None
        try:
            existing = await destination.stat(job.destination_path)  # listings carry no checksum
        except StorageNotFound:
            return None
        if existing.size != job.file.size or existing.checksum is None:
            return None
        digest = hashlib.sha256()
        async for chunk in source.read(job.file.path):
            digest.update(chunk)
        return existing if existing.checksum == f"sha256:{digest.hexdigest()}" else None


async def _cancellable(ctx: UploadContext, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        ctx.run.check_cancelled()
        yield chunk
