"""Objects in an S3 bucket (aiobotocore): multipart above a threshold, bounded, with retries."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
)
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from runmesh.common.storage.base import (
    ObjectInfo,
    Storage,
    StreamHasher,
    backoff_delay,
    format_checksum,
    guess_media_type,
    join_path,
    validate_path,
)
from runmesh.common.storage.errors import StorageError, StoragePathError, StorageTooLarge
from runmesh.common.storage.s3_errors import FAILURES, PRECONDITION_FAILED, error_code, translate

if TYPE_CHECKING:
    from runmesh.common.settings import Settings

T = TypeVar("T")

_logger = logging.getLogger("runmesh.storage")

MiB = 1 << 20
#: S3's smallest part (all but the last part of a multipart upload).
MIN_PART_SIZE = 5 * MiB
_MAX_PARTS = 10_000
_MAX_PART_SIZE = 5 * 1024 * MiB
_METADATA_KEY = "sha256"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


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


class S3Storage(Storage):
    """The objects under `prefix` in `bucket`.

    One aiobotocore client per storage, created on first use and closed by `close()`.
    Writes up to `multipart_threshold` bytes are one PUT; larger ones a multipart upload of
    `part_size` parts, each retried with exponential backoff and jitter on throttling, 5xx
    and connection errors; a failed upload is aborted. botocore retries every other call
    itself. Every call has a `timeout_s` deadline.

    At most `max_concurrency` parts are in flight per storage, across all its concurrent
    writes and copies (`parts_in_flight`): the part data held is at most
    `max_concurrency * part_size`, whatever the number of writes. Each write also buffers up
    to one part (or `multipart_threshold` bytes) plus one chunk while it waits for a slot.

    The SHA-256 of each write is kept as the object's user metadata `sha256` (hex). A
    multipart upload only knows it at the end, so the finished object is then copied onto
    itself, server-side, with that metadata; until that copy completes `stat` reports no
    checksum. Objects written by others have `checksum=None`.

    Requests are signed with the given keys, else botocore's chain; `anonymous` sends them
    unsigned (public buckets) and never looks for keys.
    """

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        anonymous: bool = False,
        region: str = "us-east-1",
        multipart_threshold: int = 8 * MiB,
        part_size: int = 8 * MiB,
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_attempts: int = 4,
    ) -> None:
        if not bucket:
            raise StorageError("an S3 storage needs a bucket name")
        if anonymous and access_key_id is not None:
            raise StorageError(f"S3 storage for bucket {bucket!r}: anonymous takes no keys")
        if (access_key_id is None) != (secret_access_key is None):
            raise StorageError(
                f"S3 storage for bucket {bucket!r}: set both the access key id and the secret "
                "access key, or neither (to use botocore's credential chain)"
            )
        if part_size < MIN_PART_SIZE or part_size > _MAX_PART_SIZE:
            raise ValueError(f"part_size must be 5 MiB to 5 GiB, not {part_size}")
        if multipart_threshold < 1 or max_concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise ValueError("multipart_threshold, max_concurrency, max_attempts, timeout_s > 0")
        self._bucket = bucket
        self._prefix = validate_path(prefix, directory=True)
        self._root = f"{self._prefix}/" if self._prefix else ""
        self._endpoint_url = endpoint_url
        self._credentials = (
            {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
            if access_key_id is not None
            else {}
        )
        # Unsigned requests: botocore's chain would otherwise find the host's own credentials.
        self._anonymous = anonymous
        self._region = region
        self._threshold = multipart_threshold
        self._part_size = part_size
        self._max_concurrency = max_concurrency
        # One budget for the whole storage, not one per write: N concurrent writes would
        # otherwise hold N times the parts. A slot is taken per part, never per write, so a
        # large write always progresses and writes holding slots never wait on each other.
        self._part_slots = asyncio.Semaphore(max_concurrency)
        self._parts_in_flight = 0
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        # Any: aiobotocore clients are generated at run time and untyped.
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        bucket: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
    ) -> S3Storage:
        """A storage configured by `settings` (endpoint, credentials, region, part sizes).

        `bucket` defaults to the platform bucket, `endpoint_url` to `settings.s3_endpoint_url`.
        """
        secret = settings.s3_secret_access_key
        return cls(
            bucket or settings.s3_bucket,
            prefix,
            endpoint_url=endpoint_url or settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            region=settings.s3_region,
            multipart_threshold=settings.s3_multipart_threshold_mb * MiB,
            part_size=settings.s3_part_size_mb * MiB,
            max_concurrency=settings.s3_max_concurrency,
        )

    @property
    def bucket(self) -> str:
        """The bucket."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix every path is under ("" for the whole bucket)."""
        return self._prefix

    @property
    def parts_in_flight(self) -> int:
        """Parts of multipart uploads and copies under way now (at most `max_concurrency`)."""
        return self._parts_in_flight

    def __repr__(self) -> str:
        return f"S3Storage({self._url('')!r}, endpoint_url={self._endpoint_url!r})"

    async def close(self) -> None:
        """Close the client. Safe to call twice; the storage cannot be used afterwards."""
        self._closed = True
        self._client = None
        await self._stack.aclose()

    # -- plumbing -------------------------------------------------------------------------

    async def _get_client(self) -> Any:  # Any: see `_client`
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await self._stack.enter_async_context(self._create_client())
        return self._client

    def _create_client(self) -> Any:  # Any: see `_client`
        custom = self._endpoint_url is not None
        config = Config(
            connect_timeout=min(10.0, self._timeout_s),
            read_timeout=self._timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, 2 * self._max_concurrency),
            # S3-compatible servers (MinIO, moto) are reached by path, not virtual host, and
            # many reject the CRC checksums botocore adds by default since 1.36.
            s3={"addressing_style": "path"} if custom else None,
            request_checksum_calculation="when_required" if custom else "when_supported",
            response_checksum_validation="when_required" if custom else "when_supported",
            signature_version=UNSIGNED if self._anonymous else None,
        )
        return get_session().create_client(
            "s3",
            region_name=self._region,
            endpoint_url=self._endpoint_url,
            config=config,
            **self._credentials,
        )

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

    def _key(self, path: str) -> str:
        return join_path(self._prefix, path) if path else self._prefix

    def _directory(self, path: str) -> str:
        """The key prefix of directory `path`."""
        key = self._key(path)
        return f"{key}/" if key else ""

    def _relative(self, key: str) -> str | None:
        """The storage path of `key`, or None when it is not a valid one (a folder marker)."""
        path = key[len(self._root) :]
        try:
            return validate_path(path)
        except StoragePathError:
            if not key.endswith("/"):
                _logger.warning("skipping S3 key %r: not a valid storage path", key)
            return None

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Await one S3 call under the timeout, as a StorageError when it fails."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except FAILURES as exc:
            raise translate(exc, what) from exc

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`_call` retried with backoff while the failure is retriable."""
        attempt = 1
        while True:
            try:
                return await self._call(what, call())
            except StorageError as exc:
                if not exc.retriable or attempt >= self._max_attempts:
                    raise
                delay = backoff_delay(attempt)
                _logger.info("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1

    def _info(self, path: str, head: dict[str, Any]) -> ObjectInfo:
        # Any: botocore responses are plain dicts of mixed types.
        digest = head.get("Metadata", {}).get(_METADATA_KEY)
        modified = head.get("LastModified")
        return ObjectInfo(
            path=path,
            size=int(head["ContentLength"]),
            checksum=(
                format_checksum(digest)
                if isinstance(digest, str) and _HEX_SHA256.fullmatch(digest)
                else None
            ),
            media_type=head.get("ContentType"),
            modified=modified if isinstance(modified, datetime) else None,
        )

    async def _head(self, path: str) -> dict[str, Any]:
        client = await self._get_client()
        head: dict[str, Any] = await self._call(
            f"stat {self._url(path)}", client.head_object(Bucket=self._bucket, Key=self._key(path))
        )
        return head

    # -- provider hooks ---------------------------------------------------------------------

    async def _pages(self, path: str, *, delimited: bool) -> AsyncIterator[dict[str, Any]]:
        client = await self._get_client()
        arguments = {"Bucket": self._bucket, "Prefix": self._directory(path)}
        if delimited:
            arguments["Delimiter"] = "/"
        pages = aiter(client.get_paginator("list_objects_v2").paginate(**arguments))
        while (page := await self._call(f"list {self._url(path)}", anext(pages, None))) is not None:
            yield page

    async def _list(self, path: str, recursive: bool) -> AsyncGenerator[ObjectInfo, None]:
        async for page in self._pages(path, delimited=not recursive):
            for item in page.get("Contents", ()):
                relative = self._relative(item["Key"])
                if relative is None:
                    continue
                modified = item.get("LastModified")
                yield ObjectInfo(
                    path=relative,
                    size=int(item["Size"]),
                    checksum=None,
                    media_type=guess_media_type(relative),
                    modified=modified if isinstance(modified, datetime) else None,
                )

    async def _list_dirs(self, path: str) -> builtins.list[str]:
        directory = self._directory(path)
        names: list[str] = []
        async for page in self._pages(path, delimited=True):
            for common in page.get("CommonPrefixes", ()):
                name = str(common["Prefix"])[len(directory) :].removesuffix("/")
                try:
                    names.append(validate_path(name))
                except StoragePathError:
                    _logger.warning("skipping S3 prefix %r: not a valid storage path", name)
        return sorted(names)

    async def _stat(self, path: str) -> ObjectInfo:
        return self._info(path, await self._head(path))

    async def _read(self, path: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        client = await self._get_client()
        what = f"read {self._url(path)}"
        response = await self._call(
            what, client.get_object(Bucket=self._bucket, Key=self._key(path))
        )
        async with response["Body"] as body:
            buffer = bytearray()
            while True:
                piece = await self._call(what, body.read(chunk_size - len(buffer)))
                if piece:
                    buffer += piece
                if len(buffer) >= chunk_size or (not piece and buffer):
                    yield bytes(buffer)
                    buffer.clear()
                if not piece:
                    return

    async def _write(
        self, path: str, chunks: AsyncIterable[bytes], media_type: str | None
    ) -> ObjectInfo:
        content_type = media_type or guess_media_type(path) or "application/octet-stream"
        hasher = StreamHasher()
        buffer = bytearray()
        iterator = aiter(chunks)
        async for chunk in iterator:
            await hasher.update(chunk)
            buffer += chunk
            if len(buffer) > self._threshold:
                return await self._write_multipart(path, content_type, hasher, buffer, iterator)
        client = await self._get_client()
        await self._call(
            f"write {self._url(path)}",
            client.put_object(
                Bucket=self._bucket,
                Key=self._key(path),
                Body=bytes(buffer),
                ContentType=content_type,
                Metadata={_METADATA_KEY: hasher.hexdigest},
            ),
        )
        return ObjectInfo(path, hasher.size, hasher.checksum, content_type, None)

    async def _write_multipart(
        self,
        path: str,
        content_type: str,
        hasher: StreamHasher,
        buffer: bytearray,
        iterator: AsyncIterator[bytes],
    ) -> ObjectInfo:
        client = await self._get_client()
        key, where = self._key(path), self._url(path)
        created = await self._call(
            f"start the upload of {where}",
            client.create_multipart_upload(Bucket=self._bucket, Key=key, ContentType=content_type),
        )
        upload_id: str = created["UploadId"]
        etags: dict[int, str] = {}

        async def upload(number: int, data: bytes) -> None:
            response = await self._retrying(
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
            if number > _MAX_PARTS:
                raise StorageTooLarge(
                    f"{where}: more than {_MAX_PARTS} parts of {self._part_size} bytes; "
                    "use a larger part size"
                )
            # The slot is taken before the part is cut from the buffer and freed once it is
            # uploaded, so the storage's slots bound the part data held in memory.
            await self._take_part_slot()
            self._start_part(group, upload(number, _take(buffer, size)))

        try:
            await _run_in_group(feed)
            parts = [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            completed = await self._call(
                f"complete the upload of {where}",
                client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            await self._abort(key, upload_id, where)
            raise
        await self._seal(path, hasher, content_type, completed.get("ETag"))
        return ObjectInfo(path, hasher.size, hasher.checksum, content_type, None)

    async def _abort(self, key: str, upload_id: str, where: str) -> None:
        client = await self._get_client()
        try:
            await self._call(
                f"abort the upload of {where}",
                client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id),
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
        self, path: str, hasher: StreamHasher, content_type: str, etag: str | None
    ) -> None:
        """Attach the checksum to a finished multipart upload by copying it onto itself."""
        key = self._key(path)
        try:
            await self._server_copy(
                key,
                key,
                size=hasher.size,
                etag=etag,
                content_type=content_type,
                metadata={_METADATA_KEY: hasher.hexdigest},
                where=self._url(path),
            )
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError):
                code, status = error_code(exc.__cause__)
                if code in PRECONDITION_FAILED or status == 412:
                    # Another writer replaced the object meanwhile; theirs is the newer one.
                    _logger.info("%s was replaced while its checksum was attached", path)
                    return
            raise

    async def _server_copy(
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
        client = await self._get_client()
        source = {"Bucket": self._bucket, "Key": src_key}
        condition = {"CopySourceIfMatch": etag} if etag else {}
        headers = {"ContentType": content_type} if content_type else {}
        if size <= self._threshold:
            await self._call(
                f"copy to {where}",
                client.copy_object(
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
        part_size = max(self._part_size, math.ceil(size / _MAX_PARTS))
        if part_size > _MAX_PART_SIZE:
            raise StorageTooLarge(f"{where}: {size} bytes is more than S3 can copy")
        created = await self._call(
            f"start the copy to {where}",
            client.create_multipart_upload(
                Bucket=self._bucket, Key=dst_key, Metadata=metadata, **headers
            ),
        )
        upload_id: str = created["UploadId"]
        etags: dict[int, str] = {}

        async def copy_part(number: int, first: int, last: int) -> None:
            response = await self._retrying(
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
            await self._call(
                f"complete the copy to {where}",
                client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            await self._abort(dst_key, upload_id, where)
            raise

    async def _copy(self, src: str, dst: str) -> ObjectInfo:
        head = await self._head(src)
        await self._server_copy(
            self._key(src),
            self._key(dst),
            size=int(head["ContentLength"]),
            etag=head.get("ETag"),
            content_type=head.get("ContentType"),
            metadata=dict(head.get("Metadata", {})),
            where=self._url(dst),
        )
        return await self._stat(dst)

    async def _delete(self, path: str) -> None:
        client = await self._get_client()
        await self._call(
            f"delete {self._url(path)}",
            client.delete_object(Bucket=self._bucket, Key=self._key(path)),
        )

    def _url(self, path: str) -> str:
        return f"s3://{self._bucket}/{self._key(path)}"
