"""Objects in an S3 bucket (aiobotocore): multipart above a threshold, bounded, with retries.

The client and its calls are in `s3_client`, multipart uploads and copies in `s3_multipart`;
this module maps storage paths to keys and implements the storage operations on them.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runmesh.storage.base import (
    ObjectInfo,
    Storage,
    StreamHasher,
    format_checksum,
    guess_media_type,
    join_path,
    validate_path,
)
from runmesh.storage.errors import StorageError, StoragePathError
from runmesh.storage.s3_client import S3Client
from runmesh.storage.s3_multipart import (
    CHECKSUM_METADATA_KEY,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    MiB,
    S3Multipart,
)

if TYPE_CHECKING:
    from runmesh.core.settings_parts import S3Settings

__all__ = ["MIN_PART_SIZE", "MiB", "S3Storage"]

_logger = logging.getLogger("runmesh.storage")

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        if part_size < MIN_PART_SIZE or part_size > MAX_PART_SIZE:
            raise ValueError(f"part_size must be 5 MiB to 5 GiB, not {part_size}")
        if multipart_threshold < 1 or max_concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise ValueError("multipart_threshold, max_concurrency, max_attempts, timeout_s > 0")
        self._bucket = bucket
        self._prefix = validate_path(prefix, directory=True)
        self._root = f"{self._prefix}/" if self._prefix else ""
        self._endpoint_url = endpoint_url
        self._threshold = multipart_threshold
        self._s3 = S3Client(
            bucket,
            name=repr(self),
            endpoint_url=endpoint_url,
            credentials=(
                {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
                if access_key_id is not None and secret_access_key is not None
                else {}
            ),
            anonymous=anonymous,
            region=region,
            max_pool_connections=max(10, 2 * max_concurrency),
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )
        self._multipart = S3Multipart(
            self._s3,
            part_size=part_size,
            threshold=multipart_threshold,
            max_concurrency=max_concurrency,
        )

    @classmethod
    def from_settings(
        cls,
        s3: S3Settings,
        *,
        bucket: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
    ) -> S3Storage:
        """A storage configured by the S3 settings (endpoint, credentials, region, part sizes).

        `bucket` defaults to the platform bucket, `endpoint_url` to `s3.endpoint_url`.
        """
        secret = s3.secret_access_key
        return cls(
            bucket or s3.bucket,
            prefix,
            endpoint_url=endpoint_url or s3.endpoint_url,
            access_key_id=s3.access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            region=s3.region,
            multipart_threshold=s3.multipart_threshold_mb * MiB,
            part_size=s3.part_size_mb * MiB,
            max_concurrency=s3.max_concurrency,
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
        return self._multipart.parts_in_flight

    def __repr__(self) -> str:
        return f"S3Storage({self._url('')!r}, endpoint_url={self._endpoint_url!r})"

    async def close(self) -> None:
        """Close the client. Safe to call twice; the storage cannot be used afterwards."""
        await self._s3.close()

    # -- plumbing -------------------------------------------------------------------------

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

    def _info(self, path: str, head: dict[str, Any]) -> ObjectInfo:
        # Any: botocore responses are plain dicts of mixed types.
        digest = head.get("Metadata", {}).get(CHECKSUM_METADATA_KEY)
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
        client = await self._s3.get()
        head: dict[str, Any] = await self._s3.request(
            "s3.head_object",
            f"stat {self._url(path)}",
            lambda: client.head_object(Bucket=self._bucket, Key=self._key(path)),
        )
        return head

    # -- provider hooks ---------------------------------------------------------------------

    async def _pages(self, path: str, *, delimited: bool) -> AsyncIterator[dict[str, Any]]:
        client = await self._s3.get()
        arguments = {"Bucket": self._bucket, "Prefix": self._directory(path)}
        if delimited:
            arguments["Delimiter"] = "/"
        # Page by page with the continuation token rather than botocore's paginator: each
        # page is then one request that `request` can send again.
        while True:
            page: dict[str, Any] = await self._s3.request(
                "s3.list_objects_v2",
                f"list {self._url(path)}",
                lambda: client.list_objects_v2(**arguments),
            )
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            arguments["ContinuationToken"] = token

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
        client = await self._s3.get()
        what = f"read {self._url(path)}"
        response = await self._s3.request(
            "s3.get_object",
            what,
            lambda: client.get_object(Bucket=self._bucket, Key=self._key(path)),
        )
        async with response["Body"] as body:
            buffer = bytearray()
            while True:
                piece = await self._s3.call(what, body.read(chunk_size - len(buffer)))
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
                await self._multipart.upload(
                    self._key(path),
                    path=path,
                    where=self._url(path),
                    content_type=content_type,
                    hasher=hasher,
                    buffer=buffer,
                    iterator=iterator,
                )
                return ObjectInfo(path, hasher.size, hasher.checksum, content_type, None)
        client = await self._s3.get()
        await self._s3.request(
            "s3.put_object",
            f"write {self._url(path)}",
            lambda: client.put_object(
                Bucket=self._bucket,
                Key=self._key(path),
                Body=bytes(buffer),
                ContentType=content_type,
                Metadata={CHECKSUM_METADATA_KEY: hasher.hexdigest},
            ),
        )
        return ObjectInfo(path, hasher.size, hasher.checksum, content_type, None)

    async def _copy(self, src: str, dst: str) -> ObjectInfo:
        head = await self._head(src)
        await self._multipart.copy(
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
        client = await self._s3.get()
        await self._s3.request(
            "s3.delete_object",
            f"delete {self._url(path)}",
            lambda: client.delete_object(Bucket=self._bucket, Key=self._key(path)),
        )

    def _url(self, path: str) -> str:
        return f"s3://{self._bucket}/{self._key(path)}"
