"""One SSE client's view of the hub: a bounded queue the hub fills and the client drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from runmesh.gateway.hub.stored_events import StoredEvent


@dataclass(slots=True, frozen=True)
class RunEnded:
    """Queued last when the run reached a terminal state."""

    state: str


class Dropped:
    """Queued in place of everything else when a subscriber is dropped."""


DROPPED: Final = Dropped()

Item = StoredEvent | RunEnded | Dropped


class Subscription:
    """One client's view of the hub: a bounded queue of events, filled by the hub.

    Iterate it (`async for event in sub`) or call `get(timeout)`; both stop when the run
    reached a terminal state (`ended_state` says which) or the hub dropped this subscriber
    because its queue was full (`dropped`).
    """

    def __init__(self, tenant: str, run_id: UUID | None, maxsize: int) -> None:
        self.tenant = tenant
        self.run_id = run_id
        self.dropped = False
        self.ended_state: str | None = None
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=maxsize)

    @property
    def closed(self) -> bool:
        """True once no more events will come (run ended or subscriber dropped)."""
        return self.dropped or self.ended_state is not None

    def qsize(self) -> int:
        """Items waiting in the queue."""
        return self._queue.qsize()

    async def get(self, timeout: float | None = None) -> StoredEvent | None:  # noqa: ASYNC109
        """The next event, or None once the subscription is over.

        Raises TimeoutError when `timeout` seconds pass without one (time for a heartbeat).
        """
        if self.closed:
            return None
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if isinstance(item, RunEnded):
            self.ended_state = item.state
            return None
        if isinstance(item, Dropped):
            return None
        return item

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StoredEvent]:
        while (event := await self.get()) is not None:
            yield event

    # Called by the hub's registry only.
    def _offer(self, item: Item) -> bool:
        """Queue `item`; False (and nothing queued) when the queue is full."""
        if self.dropped:
            return True
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def _drop(self) -> None:
        self.dropped = True
        # Free the buffered events now, and wake a reader (the queue is empty after this).
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(DROPPED)
