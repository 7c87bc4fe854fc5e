"""Multipart uploads and server-side copies of one S3 storage, bounded by its part slots."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from botocore.exceptions import ClientError

from runmesh.storage.base import StreamHasher
from runmesh.storage.errors import StorageError, StorageTooLarge
from runmesh.storage.s3_client import S3Client
from runmesh.storage.s3_errors import PRECONDITION_FAILED, error_code

_logger = logging.getLogger("runmesh.storage")

MiB = 1 << 20
#: S3's smallest part (all but the last part of a multipart upload).
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB
#: The user metadata key that holds an object's SHA-256 (hex).
CHECKSUM_METADATA_KEY = "sha256"


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_failure(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


async def _run_in_group(fill: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
    """Run `fill(group)` in a new TaskGroup; raise its first failure itself, not in a group."""
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            await fill(group)
    except BaseExceptionGroup as errors:
        failure = _first_failure(errors)
    if failure is not None:
        raise failure


def _take(buffer: bytearray, size: int) -> bytes:
    """Remove and return the first `size` bytes of `buffer` (one copy)."""
    with memoryview(buffer) as view:
        data = bytes(view[:size])
    del buffer[:size]
    return data


class S3Multipart:
    """The multipart transfers of one storage: uploads in `part_size` parts, and copies inside
    the bucket (one `copy_object` up to `threshold` bytes, else a multipart copy).

    At most `max_concurrency` parts are in flight across all the storage's writes and copies
    (`parts_in_flight`), so the part data held is at most `max_concurrency * part_size`,
    whatever the number of writes. Each part is retried by `S3Client.retrying`; a failed
    transfer is aborted.
    """

    def __init__(
        self, client: S3Client, *, part_size: int, threshold: int, max_concurrency: int
    ) -> None:
        self._s3 = client
        self._bucket = client.bucket
        self._part_size = part_size
        self._threshold = threshold
        # One budget for the whole storage, not one per write: N concurrent writes would
        # otherwise hold N times the parts. A slot is taken per part, never per write, so a
        # large write always progresses and writes holding slots never wait on each other.
        self._part_slots = asyncio.Semaphore(max_concurrency)
        self._parts_in_flight = 0

    @property
    def parts_in_flight(self) -> int:
        """Parts of multipart uploads and copies under way now (at most `max_concurrency`)."""
        return self._parts_in_flight

    async def _take_part_slot(self) -> None:
        """Wait for one of the storage's `max_concurrency` part slots."""
        await self._part_slots.acquire()
        self._parts_in_flight += 1

    def _release_part_slot(self) -> None:
        self._parts_in_flight -= 1
        self._part_slots.release()

    def _start_part(self, group: asyncio.TaskGroup, part: Coroutine[Any, Any, None]) -> None:
        """Run `part` in `group` with the slot just taken, which is freed when it ends."""
        try:
            task = group.create_task(part)
        except BaseException:
            part.close()
            self._release_part_slot()
            raise
        # A done callback, not a `finally` in `part`: a task cancelled before it first runs
        # never enters its body, and a slot lost that way would shrink the storage for good.
        task.add_done_callback(lambda _: self._release_part_slot())

    async def upload(
        self,
        key: str,
        *,
        path: str,
        where: str,
        content_type: str,
        hasher: StreamHasher,
        buffer: bytearray,
        iterator: AsyncIterator[bytes],
    ) -> None:
        """Upload `buffer` then the rest of `iterator` to `key`, hashing what it reads, then
        attach the checksum (`path` and `where` name the object in messages)."""
        client = await self._s3.get()
        created = await self._s3.request(
            "s3.create_multipart_upload",
            f"start the upload of {where}",
            lambda: client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type
            ),
        )
        upload_id: str = created["UploadId"]
        etags: dict[int, str] = {}

        async def upload(number: int, data: bytes) -> None:
            response = await self._s3.request(
                "s3.upload_part",
                f"upload part {number} of {where}",
                lambda: client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                ),
            )
            etags[number] = response["ETag"]

        async def feed(group: asyncio.TaskGroup) -> None:
            number = 0
            while True:
                while len(buffer) >= self._part_size:
                    number += 1
                    await submit(group, number, self._part_size)
                chunk = await anext(iterator, None)
                if chunk is None:
                    break
                await hasher.update(chunk)
                buffer.extend(chunk)
            if buffer:
                await submit(group, number + 1, len(buffer))

        async def submit(group: asyncio.TaskGroup, number: int, size: int) -> None:
            if number > MAX_PARTS:
                raise StorageTooLarge(
                    f"{where}: more than {MAX_PARTS} parts of {self._part_size} bytes; "
                    "use a larger part size"
                )
            # The slot is taken before the part is cut from the buffer and freed once it is
            # uploaded, so the storage's slots bound the part data held in memory.
            await self._take_part_slot()
            self._start_part(group, upload(number, _take(buffer, size)))

        try:
            await _run_in_group(feed)
            parts = [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            completed = await self._s3.request(
                "s3.complete_multipart_upload",
                f"complete the upload of {where}",
                lambda: client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            await self._abort(key, upload_id, where)
            raise
        await self._seal(key, path, where, hasher, content_type, completed.get("ETag"))

    async def _abort(self, key: str, upload_id: str, where: str) -> None:
        client = await self._s3.get()
        try:
            await self._s3.request(
                "s3.abort_multipart_upload",
                f"abort the upload of {where}",
                lambda: client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                ),
            )
        except StorageError as exc:
            _logger.warning(
                "could not abort multipart upload %s of %s (%s); a bucket lifecycle rule for "
                "incomplete uploads removes its parts",
                upload_id,
                where,
                exc,
            )

    async def _seal(
        self,
        key: str,
        path: str,
        where: str,
        hasher: StreamHasher,
        content_type: str,
        etag: str | None,
    ) -> None:
        """Attach the checksum to a finished multipart upload by copying it onto itself: a
        multipart upload only knows it at the end."""
        try:
            await self.copy(
                key,
                key,
                size=hasher.size,
                etag=etag,
                content_type=content_type,
                metadata={CHECKSUM_METADATA_KEY: hasher.hexdigest},
                where=where,
            )
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError):
                code, status = error_code(exc.__cause__)
                if code in PRECONDITION_FAILED or status == 412:
                    # Another writer replaced the object meanwhile; theirs is the newer one.
                    _logger.info("%s was replaced while its checksum was attached", path)
                    return
            raise

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        size: int,
        etag: str | None,
        content_type: str | None,
        metadata: dict[str, str],
        where: str,
    ) -> None:
        """Copy `src_key` to `dst_key` inside the bucket with `metadata`; S3 moves the bytes."""
        client = await self._s3.get()
        source = {"Bucket": self._bucket, "Key": src_key}
        condition = {"CopySourceIfMatch": etag} if etag else {}
        headers = {"ContentType": content_type} if content_type else {}
        if size <= self._threshold:
            await self._s3.request(
                "s3.copy_object",
                f"copy to {where}",
                lambda: client.copy_object(
                    Bucket=self._bucket,
                    Key=dst_key,
                    CopySource=source,
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                    **headers,
                    **condition,
                ),
            )
            return
        # Large objects: a multipart copy, which also works beyond copy_object's 5 GiB.
        part_size = max(self._part_size, math.ceil(size / MAX_PARTS))
        if part_size > MAX_PART_SIZE:
            raise StorageTooLarge(f"{where}: {size} bytes is more than S3 can copy")
        created = await self._s3.request(
            "s3.create_multipart_upload",
            f"start the copy to {where}",
            lambda: client.create_multipart_upload(
                Bucket=self._bucket, Key=dst_key, Metadata=metadata, **headers
            ),
        )
        upload_id: str = created["UploadId"]
        etags: dict[int, str] = {}

        async def copy_part(number: int, first: int, last: int) -> None:
            response = await self._s3.request(
                "s3.upload_part_copy",
                f"copy part {number} to {where}",
                lambda: client.upload_part_copy(
                    Bucket=self._bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={first}-{last}",
                    **condition,
                ),
            )
            etags[number] = response["CopyPartResult"]["ETag"]

        async def feed(group: asyncio.TaskGroup) -> None:
            for number, first in enumerate(range(0, size, part_size), start=1):
                # Copied parts hold no data here, but share the slots: `max_concurrency` also
                # bounds the storage's requests (its connection pool is sized from it).
                await self._take_part_slot()
                last = min(first + part_size, size) - 1
                self._start_part(group, copy_part(number, first, last))

        try:
            await _run_in_group(feed)
            parts = [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            await self._s3.request(
                "s3.complete_multipart_upload",
                f"complete the copy to {where}",
                lambda: client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            await self._abort(dst_key, upload_id, where)
            raise
