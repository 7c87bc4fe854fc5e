"""The job's end of the storage broker: a `Storage` whose every call goes to the worker.

A published plugin's job holds no storage credentials. `StorageBrokerClient(channel)` opens a
tenant storage (`open(provider, config)`) or the tenant's folders of the platform bucket
(`platform()`) in the worker, and the `BrokeredStorage` it returns performs each call there:
reads and writes stream chunk by chunk, and errors arrive as the StorageError subclasses the
worker met, so pipeline code that catches StorageNotFound works the same in a job.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from runmesh.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, Storage, validate_path
from runmesh.storage.broker_ops import (
    MAX_BODY_BYTES,
    MAX_LIST_PAGE,
    MAX_WRITE_MANY,
    BrokerCallError,
    BrokerChannel,
    Chunk,
    Info,
    ManyWritten,
    Names,
    Opened,
    Page,
    StreamOpened,
    storage_error_from,
)
from runmesh.storage.errors import StorageError, StorageTooLarge

__all__ = [
    "BlockingBrokerChannel",
    "BrokerCallError",
    "BrokerChannel",
    "BrokeredStorage",
    "StorageBrokerClient",
    "open_brokered",
]

_logger = logging.getLogger("runmesh.storage.brokered")

# A write gathers small chunks up to this size before one call carries them.
_WRITE_BATCH_BYTES = DEFAULT_CHUNK_SIZE


class BrokeredStorage(Storage):
    """A storage the worker opened for this job (`StorageBrokerClient` makes one).

    `url()` answers without a call, from the storage's root URL the worker sent. `scheme` is
    "brokered"; `remote_scheme` is the worker-side storage's ("file", "s3", "http").
    """

    scheme = "brokered"

    def __init__(
        self, channel: BrokerChannel, opened: Opened, *, list_page: int = MAX_LIST_PAGE
    ) -> None:
        self._channel = channel
        self._handle = opened.handle
        self._base_url = opened.url
        self.remote_scheme = opened.scheme
        self._list_page = list_page
        self._closed = False

    def __repr__(self) -> str:
        return f"BrokeredStorage({self._base_url!r})"

    # Any: args and result are the op's JSON object.
    async def _call(
        self, op: str, args: dict[str, Any], body: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        try:
            return await self._channel.call(op, args, body)
        except BrokerCallError as exc:
            raise storage_error_from(exc) from None

    async def _quietly(self, op: str, args: dict[str, Any]) -> None:
        """A clean-up call whose failure must not hide the error being raised."""
        try:
            await self._call(op, args)
        except Exception:
            _logger.debug("%s %s failed", op, args, exc_info=True)

    # -- provider hooks ------------------------------------------------------------------------

    async def _list(self, path: str, recursive: bool) -> AsyncGenerator[ObjectInfo, None]:
        result, _ = await self._call(
            "list",
            {
                "handle": self._handle,
                "path": path,
                "recursive": recursive,
                "limit": self._list_page,
            },
        )
        page = Page.model_validate(result)
        try:
            while True:
                for item in page.items:
                    yield item.info()
                if page.cursor is None:
                    return
                try:
                    result, _ = await self._call(
                        "list_next", {"cursor": page.cursor, "limit": self._list_page}
                    )
                except StorageError:
                    page = Page(items=[], cursor=None)  # the worker ends a failed listing
                    raise
                page = Page.model_validate(result)
        finally:
            if page.cursor is not None:  # stopped early, cancelled, or the channel failed
                await self._quietly("list_close", {"cursor": page.cursor})

    async def _list_dirs(self, path: str) -> builtins.list[str]:
        result, _ = await self._call("list_dirs", {"handle": self._handle, "path": path})
        return Names.model_validate(result).names

    async def _stat(self, path: str) -> ObjectInfo:
        result, _ = await self._call("stat", {"handle": self._handle, "path": path})
        return Info.model_validate(result).info.info()

    async def _read(self, path: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        result, _ = await self._call(
            "read_open",
            {"handle": self._handle, "path": path, "chunk_size": min(chunk_size, MAX_BODY_BYTES)},
        )
        stream = StreamOpened.model_validate(result).stream
        ended = False
        try:
            while not ended:
                try:
                    result, body = await self._call("read_next", {"stream": stream})
                except StorageError:
                    ended = True  # the worker ends a stream whose step failed
                    raise
                ended = Chunk.model_validate(result).eof
                if body:
                    yield body
        finally:
            if not ended:  # stopped early, cancelled, or the channel failed
                await self._quietly("read_close", {"stream": stream})

    async def read_bytes(self, path: str, *, max_bytes: int) -> bytes:
        """The whole object at `path`; StorageTooLarge when it exceeds `max_bytes`.

        One call when the limit fits in one body, else streamed.
        """
        path = validate_path(path)
        if max_bytes > MAX_BODY_BYTES:
            return await super().read_bytes(path, max_bytes=max_bytes)
        _, body = await self._call(
            "read_bytes",
            {"handle": self._handle, "path": path, "max_bytes": max(0, max_bytes)},
        )
        if len(body) > max_bytes:  # the worker checks it; a job trusts no size it did not see
            raise StorageTooLarge(f"{self.url(path)} is larger than {max_bytes} bytes")
        return body

    async def _write(
        self, path: str, chunks: AsyncIterable[bytes], media_type: str | None
    ) -> ObjectInfo:
        args: dict[str, Any] = {"handle": self._handle, "path": path, "media_type": media_type}
        buffer = bytearray()
        stream: int | None = None
        try:
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) < _WRITE_BATCH_BYTES:
                    continue
                if stream is None:
                    result, _ = await self._call("write_open", args)
                    stream = StreamOpened.model_validate(result).stream
                await self._send(stream, buffer)
                buffer.clear()
            if stream is None:
                # Everything fitted in one batch: one call instead of open, chunk, close.
                result, _ = await self._call("write_bytes", args, bytes(buffer))
                return Info.model_validate(result).info.info()
            await self._send(stream, buffer)
            ending, stream = stream, None  # write_close ends the stream, whatever its outcome
            result, _ = await self._call("write_close", {"stream": ending})
            return Info.model_validate(result).info.info()
        finally:
            # The chunks' source failed, a step failed (the worker has ended the stream then,
            # and the abort is refused quietly) or the write was cancelled.
            if stream is not None:
                await self._quietly("write_abort", {"stream": stream})

    async def _send(self, stream: int, data: bytearray) -> None:
        with memoryview(data) as view:
            for start in range(0, len(view), MAX_BODY_BYTES):
                await self._call(
                    "write_chunk", {"stream": stream}, bytes(view[start : start + MAX_BODY_BYTES])
                )

    async def _write_many(
        self, files: Sequence[tuple[str, bytes]], concurrency: int
    ) -> builtins.list[ObjectInfo | StorageError]:
        """Files in batches of at most `MAX_WRITE_MANY` within one body each: one call per
        batch (a file over a body goes alone, streamed), and the worker's storage writes each
        batch its own cheap way."""
        results: builtins.list[ObjectInfo | StorageError | None] = [None] * len(files)
        batch: builtins.list[int] = []
        size = 0

        async def flush() -> None:
            nonlocal batch, size
            if batch:
                for index, outcome in zip(
                    batch, await self._write_batch(files, batch), strict=True
                ):
                    results[index] = outcome
            batch, size = [], 0

        for index, (path, data) in enumerate(files):
            if len(data) > MAX_BODY_BYTES:
                try:
                    results[index] = await self._write_bytes(path, data, None)
                except StorageError as exc:
                    results[index] = exc
                continue
            if len(batch) == MAX_WRITE_MANY or size + len(data) > MAX_BODY_BYTES:
                await flush()
            batch.append(index)
            size += len(data)
        await flush()
        return [result for result in results if result is not None]

    async def _write_batch(
        self, files: Sequence[tuple[str, bytes]], batch: builtins.list[int]
    ) -> builtins.list[ObjectInfo | StorageError]:
        args = {
            "handle": self._handle,
            "paths": [files[index][0] for index in batch],
            "sizes": [len(files[index][1]) for index in batch],
        }
        result, _ = await self._call(
            "write_many", args, b"".join(files[index][1] for index in batch)
        )
        items = ManyWritten.model_validate(result).items
        if len(items) != len(batch):
            raise StorageError(f"the worker answered {len(items)} of {len(batch)} writes")
        return [
            item.info.info()
            if item.info is not None
            else storage_error_from(
                BrokerCallError(item.error_type or "StorageError", item.message, item.details)
            )
            for item in items
        ]

    async def _write_bytes(self, path: str, data: bytes, media_type: str | None) -> ObjectInfo:
        if len(data) > MAX_BODY_BYTES:
            return await super()._write_bytes(path, data, media_type)
        result, _ = await self._call(
            "write_bytes", {"handle": self._handle, "path": path, "media_type": media_type}, data
        )
        return Info.model_validate(result).info.info()

    async def _copy(self, src: str, dst: str) -> ObjectInfo:
        result, _ = await self._call("copy", {"handle": self._handle, "src": src, "dst": dst})
        return Info.model_validate(result).info.info()

    async def _delete(self, path: str) -> None:
        await self._call("delete", {"handle": self._handle, "path": path})

    def _url(self, path: str) -> str:
        if not path:
            return self._base_url
        # As the worker's storage writes it: S3 keys raw, file and HTTP paths percent-quoted.
        tail = path if self.remote_scheme == "s3" else quote(path)
        return self._base_url + ("" if self._base_url.endswith("/") else "/") + tail

    async def close(self) -> None:
        """Close the storage in the worker; safe to call twice, and after the run ended."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(StorageError):
            await self._call("close", {"handle": self._handle})


class StorageBrokerClient:
    """Opens storages in the worker for a job: `await client.open("s3", config)`,
    `await client.platform()`; close each storage (`async with`) when done.

    Args:
        channel: The job's channel to its worker.
        list_page: Objects one listing call fetches (at most `MAX_LIST_PAGE`).
    """

    def __init__(self, channel: BrokerChannel, *, list_page: int = MAX_LIST_PAGE) -> None:
        if not 1 <= list_page <= MAX_LIST_PAGE:
            raise ValueError(f"list_page must be 1 to {MAX_LIST_PAGE}, not {list_page}")
        self._channel = channel
        self._list_page = list_page

    async def open(self, provider: str, config: Mapping[str, Any]) -> BrokeredStorage:
        """The tenant's storage of `provider` with `config` (as `open_storage` takes them),
        opened by the worker under the operator's policy (StoragePolicyError if refused)."""
        # Any: a provider's JSON config.
        return await self._open({"provider": provider, "config": dict(config)})

    async def platform(self) -> BrokeredStorage:
        """The platform bucket, limited to the tenant's own folders (`tenant_prefixes`): paths
        are keys from the bucket's root, and any other is a StorageScopeError."""
        return await self._open({"platform": True})

    async def _open(self, args: dict[str, Any]) -> BrokeredStorage:
        try:
            result, _ = await self._channel.call("open", args)
        except BrokerCallError as exc:
            raise storage_error_from(exc) from None
        return BrokeredStorage(
            self._channel, Opened.model_validate(result), list_page=self._list_page
        )


class BlockingBrokerChannel(BrokerChannel, Protocol):
    """A channel that can also wait for a reply in the calling thread (the job's pipe)."""

    # Any: args and result are JSON objects.
    def call_blocking(self, op: str, args: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """`call`, blocking the calling thread until the reply."""
        ...


def open_brokered(channel: BlockingBrokerChannel, args: dict[str, Any]) -> BrokeredStorage:
    """Open a storage in the worker now (`args` as the `open` op takes them), blocking for
    the one round trip: `open_storage` and `platform_storage` are synchronous, and the
    storage's `url()` must answer from the start."""
    try:
        result, _ = channel.call_blocking("open", args)
    except BrokerCallError as exc:
        raise storage_error_from(exc) from None
    return BrokeredStorage(channel, Opened.model_validate(result))
