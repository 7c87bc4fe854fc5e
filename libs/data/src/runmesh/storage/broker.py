"""The worker's end of the storage broker: performs a job's storage calls on storages the worker
opens itself, under the tenant and policy checks, so the job never holds their credentials.

One `StorageBroker` per job run. Every call is hostile input (the job runs tenant code): its
arguments are validated per op (`broker_ops`), ids are checked against what this job opened,
and open handles, streams and cursors and the size of one body are bounded. Ops and their
shapes are listed in `StorageBroker`; how errors travel in `StorageBroker.handle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from runmesh.core.settings import Settings
from runmesh.storage.base import ObjectInfo, Storage, validate_path
from runmesh.storage.broker_messages import problems, secrets_of
from runmesh.storage.broker_ops import (
    INTERNAL_ERROR,
    MAX_BODY_BYTES,
    MAX_CURSORS,
    MAX_ERROR_CHARS,
    MAX_HANDLES,
    MAX_LIST_PAGE,
    MAX_STREAMS,
    REQUEST_ERROR,
    BrokerCallError,
    BrokerChannel,
    Chunk,
    CopyArgs,
    CursorArgs,
    CursorCloseArgs,
    DirArgs,
    HandleArgs,
    Info,
    ListArgs,
    ManyWritten,
    Names,
    OpenArgs,
    Opened,
    Page,
    PathArgs,
    ReadBytesArgs,
    ReadOpenArgs,
    StreamArgs,
    StreamOpened,
    WireObjectInfo,
    WriteArgs,
    WriteManyArgs,
    Written,
    error_type_of,
    reply,
)
from runmesh.storage.broker_streams import Busy, Pump, Upload
from runmesh.storage.errors import (
    StorageError,
    StoragePolicyError,
    StorageScopeError,
    StorageTooLarge,
)
from runmesh.storage.factory import open_storage, platform_storage
from runmesh.storage.policy import tenant_prefixes

__all__ = ["BrokerCallError", "BrokerChannel", "StorageBroker"]

_logger = logging.getLogger("runmesh.storage.broker")

# Any: a reply's result is a JSON object whose shape depends on the op.
Reply = tuple[dict[str, Any], bytes]


def _refused(message: str) -> BrokerCallError:
    return BrokerCallError(REQUEST_ERROR, message)


@dataclass(slots=True)
class _Handle:
    storage: Storage
    # The platform bucket: the tenant's prefixes, under which every path named must lie.
    scope: tuple[str, ...] | None


class StorageBroker:
    """Performs one job's storage calls (`handle`); `close()` when the job's run ends.

    Ops (args → result; "+ body" where data travels as the call's or reply's body):

    - `open {provider, config}` or `{platform: true}` → `{handle, url, scheme}`
    - `close {handle}` → `{}`
    - `list {handle, path="", recursive=false, limit≤1000}` → `{items: [info], cursor|null}`
    - `list_next {cursor, limit}` → `{items, cursor|null}`; `list_close {cursor}` → `{}`
    - `list_dirs {handle, path=""}` → `{names}`
    - `stat {handle, path}` → `{info}`; `delete {handle, path}` → `{}`
    - `copy {handle, src, dst}` → `{info}`
    - `read_bytes {handle, path, max_bytes≤8 MiB}` → `{}` + body
    - `read_open {handle, path, chunk_size≤8 MiB}` → `{stream}`;
      `read_next {stream}` → `{eof}` + body; `read_close {stream}` → `{}`
    - `write_bytes {handle, path, media_type=null}` + body → `{info}`
    - `write_many {handle, paths, sizes}` + the files' bytes end to end → `{items}`: per
      file its `{info}` or `{error_type, message, details}` (the storage's own batched write)
    - `write_open {handle, path, media_type=null}` → `{stream}`; `write_chunk {stream}` + body
      → `{}`; `write_close {stream}` → `{info}`; `write_abort {stream}` → `{}`

    `info` is an ObjectInfo (`WireObjectInfo`). A stream or cursor ends with its last step
    (`eof`, a null cursor, `write_close`) or with any error of a step. On the platform bucket
    (`platform: true`) every path must lie in the tenant's own folders (`tenant_prefixes`).

    Args:
        tenant: The run's tenant, whose storages the job may open.
        settings: The platform's settings: the operator's storage policy and the platform
            bucket with its keys (which never leave this process).
    """

    def __init__(self, tenant: str, settings: Settings) -> None:
        self.tenant = tenant
        self._storage = settings.storage  # the S3 part and the policy; never sent to the job
        self._secrets = secrets_of(settings)
        self._ids = itertools.count(1)
        self._handles: dict[int, _Handle] = {}
        self._readers: dict[int, Pump[bytes]] = {}
        self._writers: dict[int, Upload] = {}
        self._cursors: dict[int, Pump[ObjectInfo]] = {}
        self._closed = False
        # Any: each op takes its own args model.
        self._ops: dict[str, tuple[type[BaseModel], Callable[[Any, bytes], Awaitable[Reply]]]] = {
            "open": (OpenArgs, self._open),
            "close": (HandleArgs, self._close),
            "list": (ListArgs, self._list),
            "list_next": (CursorArgs, self._list_next),
            "list_close": (CursorCloseArgs, self._list_close),
            "list_dirs": (DirArgs, self._list_dirs),
            "stat": (PathArgs, self._stat),
            "delete": (PathArgs, self._delete),
            "copy": (CopyArgs, self._copy),
            "read_bytes": (ReadBytesArgs, self._read_bytes),
            "read_open": (ReadOpenArgs, self._read_open),
            "read_next": (StreamArgs, self._read_next),
            "read_close": (StreamArgs, self._read_close),
            "write_bytes": (WriteArgs, self._write_bytes),
            "write_many": (WriteManyArgs, self._write_many),
            "write_open": (WriteArgs, self._write_open),
            "write_chunk": (StreamArgs, self._write_chunk),
            "write_close": (StreamArgs, self._write_close),
            "write_abort": (StreamArgs, self._write_abort),
        }
        self._with_body = frozenset({"write_bytes", "write_many", "write_chunk"})

    @property
    def open_handles(self) -> int:
        """Storages the job holds open."""
        return len(self._handles)

    @property
    def open_streams(self) -> int:
        """Read and write streams the job holds open."""
        return len(self._readers) + len(self._writers)

    @property
    def open_cursors(self) -> int:
        """Listings the job holds open."""
        return len(self._cursors)

    async def handle(self, op: str, args: dict[str, Any], body: bytes) -> Reply:
        """Perform one call; its result object and reply body.

        Any failure raises BrokerCallError: a StorageError as its allow-listed class name
        (`error_type_of`; a StoragePolicyError's field and setting in `details`), a
        malformed call as `REQUEST_ERROR`, anything else as `INTERNAL_ERROR` with a generic
        message (the traceback goes to this worker's log). Messages never carry the
        platform's secrets, nor a traceback.
        """
        try:
            return await self._perform(op, args, body)
        except BrokerCallError:
            raise
        except StorageError as exc:
            raise self._call_error(exc) from None
        except ValidationError as exc:
            raise BrokerCallError(REQUEST_ERROR, self._clean(problems(op, exc))) from None
        except Exception:
            _logger.exception("storage broker (tenant %r): %r failed", self.tenant, op)
            raise BrokerCallError(
                INTERNAL_ERROR, "the worker failed to perform this storage call (see its log)"
            ) from None

    async def close(self) -> None:
        """Abandon every open stream and listing and close every storage; safe to call twice."""
        self._closed = True
        streams: list[Pump[bytes] | Upload | Pump[ObjectInfo]] = [
            *self._readers.values(),
            *self._writers.values(),
            *self._cursors.values(),
        ]
        self._readers.clear()
        self._writers.clear()
        self._cursors.clear()
        await asyncio.gather(*(stream.cancel() for stream in streams))
        handles, self._handles = list(self._handles.values()), {}
        for entry in handles:
            await self._close_storage(entry.storage)

    # -- plumbing ------------------------------------------------------------------------------

    async def _perform(self, op: str, args: dict[str, Any], body: bytes) -> Reply:
        if self._closed:
            raise _refused("the storage broker is closed: the run has ended")
        entry = self._ops.get(op) if isinstance(op, str) else None
        if entry is None:
            shown = op[:64] if isinstance(op, str) else type(op).__name__
            raise _refused(f"unknown op {shown!r}; known: {', '.join(self._ops)}")
        if not isinstance(body, bytes) or len(body) > MAX_BODY_BYTES:
            raise _refused(f"{op!r}: a body is bytes of at most {MAX_BODY_BYTES} bytes")
        if body and op not in self._with_body:
            raise _refused(f"{op!r} takes no body")
        model, perform = entry
        return await perform(model.model_validate(args), body)

    def _clean(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message[:MAX_ERROR_CHARS]

    def _handle(self, handle: int) -> _Handle:
        entry = self._handles.get(handle)
        if entry is None:
            raise _refused(f"no open storage handle {handle}")
        return entry

    def _target(self, handle: int, path: str, *, directory: bool = False) -> tuple[Storage, str]:
        """The storage of `handle` and `path` validated (and scoped, on the platform bucket)."""
        entry = self._handle(handle)
        checked = validate_path(path, directory=directory)
        if entry.scope is not None:
            key = f"{checked}/" if directory else checked
            if not any(key.startswith(prefix) for prefix in entry.scope):
                raise StorageScopeError(
                    f"{entry.storage.url(checked)} lies outside tenant {self.tenant!r}'s "
                    f"folders of the platform bucket ({', '.join(entry.scope)})"
                )
        return entry.storage, checked

    def _room_for_stream(self) -> None:
        if self.open_streams >= MAX_STREAMS:
            raise _refused(
                f"too many open read and write streams (at most {MAX_STREAMS}): "
                "finish or close one first"
            )

    @contextlib.asynccontextmanager
    async def _step(self, ident: int, stream: Busy) -> AsyncIterator[None]:
        """One call at a time per stream; a step that fails ends its stream."""
        if stream.busy:
            raise _refused(f"stream {ident} is busy with another call")
        stream.busy = True
        try:
            yield
        except BaseException:
            await self._drop(ident)
            raise
        finally:
            stream.busy = False

    async def _drop(self, ident: int) -> None:
        stream = (
            self._readers.pop(ident, None)
            or self._writers.pop(ident, None)
            or self._cursors.pop(ident, None)
        )
        if stream is not None:
            await stream.cancel()

    async def _close_storage(self, storage: Storage) -> None:
        try:
            await storage.close()
        except Exception:
            _logger.warning("storage broker: closing %r failed", storage, exc_info=True)

    # -- storages ------------------------------------------------------------------------------

    async def _open(self, args: OpenArgs, body: bytes) -> Reply:
        if len(self._handles) >= MAX_HANDLES:
            raise _refused(f"too many open storages (at most {MAX_HANDLES}): close one first")
        storage: Storage
        if args.platform:
            scope = tenant_prefixes(self.tenant)
            if not scope:
                raise StorageScopeError(
                    f"tenant {self.tenant!r} owns no folder of the platform bucket"
                )
            storage = platform_storage(self._storage.s3)
        else:
            assert args.provider is not None and args.config is not None  # by OpenArgs
            scope = None
            storage = open_storage(args.provider, args.config, self._storage, tenant=self.tenant)
        handle = next(self._ids)
        self._handles[handle] = _Handle(storage, scope)
        return reply(Opened(handle=handle, url=storage.url(""), scheme=storage.scheme)), b""

    async def _close(self, args: HandleArgs, body: bytes) -> Reply:
        entry = self._handles.pop(args.handle, None)
        if entry is None:
            raise _refused(f"no open storage handle {args.handle}")
        tables: list[dict[int, Any]] = [self._readers, self._writers, self._cursors]
        owned = [ident for table in tables for ident, s in table.items() if s.handle == args.handle]
        await asyncio.gather(*(self._drop(ident) for ident in owned))
        await self._close_storage(entry.storage)
        return {}, b""

    # -- one-call ops --------------------------------------------------------------------------

    async def _list_dirs(self, args: DirArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path, directory=True)
        names = await storage.list_dirs(path)
        # One reply travels in one frame of the job's pipe: bounded like a body.
        if sum(len(name.encode()) + 4 for name in names) > MAX_BODY_BYTES:
            raise StorageTooLarge(
                f"{storage.url(path)} has too many subdirectories ({len(names)}) to list "
                "through the worker"
            )
        return reply(Names(names=names)), b""

    async def _stat(self, args: PathArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        return _info(await storage.stat(path)), b""

    async def _delete(self, args: PathArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        await storage.delete(path)
        return {}, b""

    async def _copy(self, args: CopyArgs, body: bytes) -> Reply:
        storage, src = self._target(args.handle, args.src)
        _, dst = self._target(args.handle, args.dst)
        return _info(await storage.copy(src, dst)), b""

    async def _read_bytes(self, args: ReadBytesArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        return {}, await storage.read_bytes(path, max_bytes=args.max_bytes)

    async def _write_bytes(self, args: WriteArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        return _info(await storage.write_bytes(path, body, media_type=args.media_type)), b""

    async def _write_many(self, args: WriteManyArgs, body: bytes) -> Reply:
        if sum(args.sizes) != len(body):
            raise _refused(f"sizes add up to {sum(args.sizes)} bytes, the body has {len(body)}")
        written: list[Written | None] = [None] * len(args.paths)
        files: list[tuple[str, bytes]] = []
        positions: list[int] = []
        start = 0
        with memoryview(body) as view:
            for index, (path, size) in enumerate(zip(args.paths, args.sizes, strict=True)):
                data, start = bytes(view[start : start + size]), start + size
                try:
                    storage, checked = self._target(args.handle, path)
                except StorageError as exc:  # this file only: out of scope, a bad path
                    written[index] = self._failed(exc)
                    continue
                files.append((checked, data))
                positions.append(index)
        if files:
            outcomes = await storage.write_many(files)
            for index, outcome in zip(positions, outcomes, strict=True):
                written[index] = (
                    self._failed(outcome)
                    if isinstance(outcome, StorageError)
                    else Written(info=WireObjectInfo.model_validate(outcome))
                )
        return reply(ManyWritten(items=[item for item in written if item is not None])), b""

    def _failed(self, error: StorageError) -> Written:
        failure = self._call_error(error)
        return Written(
            error_type=failure.error_type,
            message=failure.message,
            details=failure.details or None,
        )

    def _call_error(self, error: StorageError) -> BrokerCallError:
        """How `error` reaches the job: its allow-listed class, a message without secrets and
        a StoragePolicyError's field and setting."""
        details = (
            {"field": error.field, "setting": error.setting}
            if isinstance(error, StoragePolicyError)
            else None
        )
        return BrokerCallError(error_type_of(error), self._clean(str(error)), details)

    # -- listings ------------------------------------------------------------------------------

    async def _list(self, args: ListArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path, directory=True)
        if len(self._cursors) >= MAX_CURSORS:
            raise _refused(f"too many open listings (at most {MAX_CURSORS}): finish one first")
        pump = Pump(
            args.handle, storage.list(path, recursive=args.recursive), maxsize=MAX_LIST_PAGE
        )
        cursor = next(self._ids)
        self._cursors[cursor] = pump
        return await self._page(cursor, pump, args.limit)

    async def _list_next(self, args: CursorArgs, body: bytes) -> Reply:
        pump = self._cursors.get(args.cursor)
        if pump is None:
            raise _refused(f"no open listing cursor {args.cursor}")
        return await self._page(args.cursor, pump, args.limit)

    async def _page(self, cursor: int, pump: Pump[ObjectInfo], limit: int) -> Reply:
        items: list[WireObjectInfo] = []
        done = False
        async with self._step(cursor, pump):
            while len(items) < limit:
                entry = await pump.next()
                if entry is None:
                    done = True
                    break
                items.append(WireObjectInfo.model_validate(entry[0]))
        if done:
            await self._drop(cursor)
        return reply(Page(items=items, cursor=None if done else cursor)), b""

    async def _list_close(self, args: CursorCloseArgs, body: bytes) -> Reply:
        if args.cursor not in self._cursors:
            raise _refused(f"no open listing cursor {args.cursor}")
        await self._drop(args.cursor)
        return {}, b""

    # -- read streams --------------------------------------------------------------------------

    async def _read_open(self, args: ReadOpenArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        self._room_for_stream()
        # One chunk read ahead while the job handles the previous one.
        pump = Pump(args.handle, storage.read(path, chunk_size=args.chunk_size), maxsize=1)
        stream = next(self._ids)
        self._readers[stream] = pump
        return reply(StreamOpened(stream=stream)), b""

    async def _read_next(self, args: StreamArgs, body: bytes) -> Reply:
        pump = self._readers.get(args.stream)
        if pump is None:
            raise _refused(f"no open read stream {args.stream}")
        async with self._step(args.stream, pump):
            entry = await pump.next()
        if entry is None:
            await self._drop(args.stream)
            return reply(Chunk(eof=True)), b""
        return reply(Chunk(eof=False)), entry[0]

    async def _read_close(self, args: StreamArgs, body: bytes) -> Reply:
        if args.stream not in self._readers:
            raise _refused(f"no open read stream {args.stream}")
        await self._drop(args.stream)
        return {}, b""

    # -- write streams -------------------------------------------------------------------------

    async def _write_open(self, args: WriteArgs, body: bytes) -> Reply:
        storage, path = self._target(args.handle, args.path)
        self._room_for_stream()
        stream = next(self._ids)
        self._writers[stream] = Upload(args.handle, storage, path, args.media_type)
        return reply(StreamOpened(stream=stream)), b""

    def _writer(self, stream: int) -> Upload:
        upload = self._writers.get(stream)
        if upload is None:
            raise _refused(f"no open write stream {stream}")
        return upload

    async def _write_chunk(self, args: StreamArgs, body: bytes) -> Reply:
        upload = self._writer(args.stream)
        async with self._step(args.stream, upload):
            if body:
                await upload.put(body)
        return {}, b""

    async def _write_close(self, args: StreamArgs, body: bytes) -> Reply:
        upload = self._writer(args.stream)
        async with self._step(args.stream, upload):
            info = await upload.finish()
        self._writers.pop(args.stream, None)
        return _info(info), b""

    async def _write_abort(self, args: StreamArgs, body: bytes) -> Reply:
        self._writer(args.stream)
        await self._drop(args.stream)
        return {}, b""


def _info(info: ObjectInfo) -> dict[str, Any]:
    return reply(Info(info=WireObjectInfo.model_validate(info)))
