"""Group commit: many concurrent callers, one write per batch, each caller awaits its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommitter(Generic[T]):
    """Collects items submitted concurrently and writes them with one `flush(items)` call.

    At most one flush is in flight; items submitted meanwhile form the next batch, so the
    batch size grows with load and a lone caller waits for no timer. `submit` returns once the
    batch holding its item was written, or raises what the flush raised.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], *, max_items: int = 1000):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Queue `item` and wait until it is written."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_all())
        await future

    async def _write_all(self) -> None:
        await asyncio.sleep(0)  # let callers woken in this loop iteration join the batch
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            try:
                await self._flush([item for item, _ in batch])
            except asyncio.CancelledError:
                # Shutting down mid-flush: nobody may wait forever on a write that will not come.
                for _, future in [*batch, *self._pending]:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # noqa: BLE001 -- handed to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
