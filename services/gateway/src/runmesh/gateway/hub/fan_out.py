"""The hub's fan-out: run notices coalesced per run, each run's new rows read once and queued
for every subscriber of the run and of its tenant."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import asyncpg

from runmesh.core.events import TERMINAL_STATES
from runmesh.core.notices import RunNotice
from runmesh.gateway.hub.registry import RunFeed, SubscriptionRegistry
from runmesh.gateway.hub.stored_events import PAGE_SIZE, EventStore, StoredEvent
from runmesh.gateway.hub.subscription import RunEnded

log = logging.getLogger(__name__)

_RETRY_DELAY_S: Final = 1.0  # before re-reading runs whose fetch failed
_MAX_CONCURRENT_FETCHES: Final = 8  # leave most of the pool to HTTP requests

# Errors of one database round trip: the run is retried.
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(slots=True)
class PendingRun:
    """What the notices received for one run since it was last processed say."""

    tenant: str
    last_id: int | None
    terminal: bool

    def merge(self, other: PendingRun) -> None:
        """Fold a later notice of the same run into this one."""
        if other.last_id is not None:
            self.last_id = max(self.last_id or 0, other.last_id)
        self.terminal = self.terminal or other.terminal


class FanOut:
    """Reads the new rows of notified runs once and delivers them through the registry."""

    def __init__(self, registry: SubscriptionRegistry, store: EventStore) -> None:
        self._registry = registry
        self._store = store
        # Notices coalesce per run until processed: bounded by the number of runs, not by
        # the notification rate.
        self.pending: dict[UUID, PendingRun] = {}
        self._wakeup = asyncio.Event()
        self._fetch_slots = asyncio.Semaphore(_MAX_CONCURRENT_FETCHES)

    def notify(self, notice: RunNotice) -> None:
        """Record the run as pending (cheap, never blocks: called from the LISTEN callback)."""
        self._enqueue(
            notice.run_id,
            PendingRun(tenant=notice.tenant, last_id=notice.last_id, terminal=notice.terminal),
        )

    def _enqueue(self, run_id: UUID, notice: PendingRun) -> None:
        pending = self.pending.get(run_id)
        if pending is None:
            self.pending[run_id] = notice
        else:
            pending.merge(notice)
        self._wakeup.set()

    async def process_pending(self) -> bool:
        """Process every notice received so far; False if some run must be retried."""
        self._wakeup.clear()
        batch, self.pending = self.pending, {}
        if not batch:
            return True
        results = await asyncio.gather(*(self._process(r, n) for r, n in batch.items()))
        return all(results)

    async def dispatch_forever(self) -> None:
        """Process notices as they come, retrying failed runs after a pause."""
        while True:
            await self._wakeup.wait()
            if not await self.process_pending():
                await asyncio.sleep(_RETRY_DELAY_S)

    async def resync(self) -> None:
        """After (re)connecting: re-read every subscribed run, as if all had been notified.

        Notices sent while the connection was down are lost; each subscriber's cursor says
        where it stopped, and terminal runs are recognised by their state.
        """
        for run_id, feed in list(self._registry.feeds.items()):
            if feed.subscribers:
                self._enqueue(run_id, PendingRun(tenant=feed.tenant, last_id=None, terminal=True))
        for tenant, tenant_feed in list(self._registry.tenants.items()):
            for run_id, last_id in await self._store.runs_with_events_after(
                tenant, tenant_feed.high
            ):
                self._enqueue(run_id, PendingRun(tenant=tenant, last_id=last_id, terminal=False))

    async def _process(self, run_id: UUID, notice: PendingRun) -> bool:
        try:
            async with self._fetch_slots:
                await self._fetch_and_fan_out(run_id, notice)
        except _DB_ERRORS as exc:
            log.warning("could not read new events of run %s (%s); retrying", run_id, exc)
            self._enqueue(run_id, notice)
            return False
        return True

    async def _fetch_and_fan_out(self, run_id: UUID, notice: PendingRun) -> None:
        registry = self._registry
        feed = registry.feeds.get(run_id)
        if feed is None:
            tenant_feed = registry.tenants.get(notice.tenant)
            if tenant_feed is None:
                return  # nobody listens: no query at all
            feed = registry.add_feed(run_id, notice.tenant, cursor=tenant_feed.floor)
        else:
            registry.feeds.move_to_end(run_id)
        async with feed.lock:
            if feed.cursor is None:  # a subscriber's set-up failed half-way
                feed.cursor = await self._store.last_event_id(run_id)
            if not notice.terminal and notice.last_id is not None and notice.last_id <= feed.cursor:
                return  # already fetched (a resync or an earlier notice got it)
            # The state is read before the rows: when it is terminal, the rows of the
            # transaction that made it so are committed and fetched below.
            state = await self._store.run_state(run_id) if notice.terminal else None
            while True:
                events = await self._store.events_after(run_id, feed.cursor, PAGE_SIZE)
                if events:
                    feed.cursor = events[-1].id
                    self._fan_out(feed, events)
                if len(events) < PAGE_SIZE:
                    break
            if state in TERMINAL_STATES:
                assert state is not None
                ended = list(feed.subscribers)
                feed.subscribers.clear()
                registry.deliver(ended, RunEnded(state))
                registry.end_feed(run_id, feed)

    def _fan_out(self, feed: RunFeed, events: list[StoredEvent]) -> None:
        tenant_feed = self._registry.tenants.get(feed.tenant)
        for event in events:
            # Re-read the subscriber sets per event: a drop removes its subscriber at once.
            subs = list(feed.subscribers)
            if tenant_feed is not None:
                subs.extend(tenant_feed.subscribers)
                tenant_feed.high = max(tenant_feed.high, event.id)
            self._registry.deliver(subs, event)
