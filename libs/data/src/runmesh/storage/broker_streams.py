"""The streams of the storage broker (`broker.StorageBroker`): a read or listing runs ahead in a
task of its own, a write is fed to its storage through a bounded queue; either is abandoned
between two steps of its storage, whatever the job's call is waiting for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Generic, NoReturn, Protocol, TypeVar

from runmesh.storage.base import ObjectInfo, Storage
from runmesh.storage.broker_ops import WRITE_QUEUE_CHUNKS
from runmesh.storage.errors import StorageError, StorageUnavailable

T = TypeVar("T")

#: How long one step of a stream may take: the next chunk or page, room for a written chunk,
#: the end of a write. Each storage call has its own, shorter deadline; this one catches a
#: storage that stops answering between them.
STEP_TIMEOUT_S = 300.0
#: How long an abandoned stream's storage may take to stop by itself before it is cancelled.
#: Cancelling a storage mid-step can strand what a worker thread is doing for it (a file
#: storage's temporary file, an open descriptor), so a stream is stopped between steps.
ABORT_GRACE_S = 10.0


class Busy(Protocol):
    """What runs one call at a time."""

    busy: bool


class Pump(Generic[T]):
    """An async generator run in a task of its own, up to `maxsize` items ahead of the caller.

    `cancel` stops it between two items of the source: the task is cancelled only while it
    waits for room in the queue, or when the source takes longer than ABORT_GRACE_S.
    """

    def __init__(self, handle: int, source: AsyncGenerator[T, None], *, maxsize: int) -> None:
        self.handle = handle
        self.busy = False
        # A 1-tuple per item; None marks the end (after the source's error, if any).
        self._queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize)
        self._error: Exception | None = None
        self._stopping = False
        self._in_source = False
        self.task = asyncio.create_task(self._run(source))

    async def _run(self, source: AsyncGenerator[T, None]) -> None:
        try:
            async with contextlib.aclosing(source):
                while not self._stopping:
                    self._in_source = True
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        break
                    finally:
                        self._in_source = False
                    if self._stopping:
                        break
                    await self._queue.put((item,))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which reports it
            self._error = exc
        if not self._stopping:
            await self._queue.put(None)

    async def next(self) -> tuple[T] | None:
        """The next item (in a 1-tuple), or None at the end; raises what the source raised."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                entry = await self._queue.get()
        except TimeoutError:
            raise StorageUnavailable(f"the storage sent nothing for {STEP_TIMEOUT_S:g} s") from None
        if entry is None and self._error is not None:
            raise self._error
        return entry

    async def cancel(self) -> None:
        """Stop the source; a caller waiting in `next` gets a StorageError."""
        self._stopping = True
        if self._in_source:
            await asyncio.wait({self.task}, timeout=ABORT_GRACE_S)
        self.task.cancel()  # nothing happens when it is done
        await asyncio.gather(self.task, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._error = StorageError("the stream was closed")
        self._queue.put_nowait(None)


class Upload:
    """A `Storage.write` running in a task of its own, fed through a bounded queue.

    `cancel` makes the storage's next pull of a chunk fail, so it discards what it received
    its own way (a temporary file removed, a multipart upload aborted); the task is cancelled
    only when that takes longer than ABORT_GRACE_S.
    """

    def __init__(self, handle: int, storage: Storage, path: str, media_type: str | None) -> None:
        self.handle = handle
        self.busy = False
        # Chunks; None ends the write, a StorageError aborts it.
        self._queue: asyncio.Queue[bytes | StorageError | None] = asyncio.Queue(WRITE_QUEUE_CHUNKS)
        self.task = asyncio.create_task(storage.write(path, self._chunks(), media_type=media_type))

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        while (chunk := await self._queue.get()) is not None:
            if isinstance(chunk, StorageError):
                raise chunk
            yield chunk

    async def put(self, chunk: bytes | None) -> None:
        """Hand `chunk` (None: the end) to the write; raises what stopped the write."""
        if not self.task.done():
            putter = asyncio.ensure_future(self._queue.put(chunk))
            try:
                done, _ = await asyncio.wait(
                    {putter, self.task},
                    timeout=STEP_TIMEOUT_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                putter.cancel()  # nothing happens when it is done
            if putter in done:
                return
            if not done:
                raise StorageUnavailable(f"the storage took no data for {STEP_TIMEOUT_S:g} s")
        self._raise_ended()

    def _raise_ended(self) -> NoReturn:
        if self.task.cancelled():
            raise StorageError("the write was aborted")
        error = self.task.exception()
        if error is not None:
            raise error
        raise StorageError("the storage ended the write before its last chunk")

    async def finish(self) -> ObjectInfo:
        """End the write and return what was stored."""
        await self.put(None)
        done, _ = await asyncio.wait({self.task}, timeout=STEP_TIMEOUT_S)
        if not done:
            raise StorageUnavailable(
                f"the storage did not finish the write in {STEP_TIMEOUT_S:g} s"
            )
        return self.task.result()

    async def cancel(self) -> None:
        """Abandon the write; the storage keeps nothing of it."""
        if not self.task.done():
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(StorageError("the write was aborted"))
            await asyncio.wait({self.task}, timeout=ABORT_GRACE_S)
            self.task.cancel()  # nothing happens when it is done
        await asyncio.gather(self.task, return_exceptions=True)
