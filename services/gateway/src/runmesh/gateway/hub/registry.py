"""The hub's subscription registry: who follows which run, or every run of a tenant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from runmesh.gateway.hub.stored_events import EventStore
from runmesh.gateway.hub.subscription import Item, Subscription

log = logging.getLogger(__name__)

_MAX_TRACKED_RUNS: Final = 10_000  # per-run cursors kept for tenant-wide subscribers


@dataclass(slots=True)
class RunFeed:
    """Per-run state: the highest id fetched, and who receives the run's events."""

    tenant: str
    cursor: int | None
    subscribers: set[Subscription] = field(default_factory=set)
    # Serializes fetches of this run, and a new subscriber's cursor set-up, so every row is
    # fetched and fanned out exactly once and in order.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class TenantFeed:
    """Tenant-wide subscribers of one tenant (the dashboard stream)."""

    floor: int  # global max event id when the first of them subscribed
    high: int  # highest event id fanned out to them (resume point after a reconnect)
    subscribers: set[Subscription] = field(default_factory=set)


class SubscriptionRegistry:
    """Run feeds (each with its cursor and subscribers) and tenant-wide subscribers.

    A feed lives while someone follows its run, by id or through its tenant; the least
    recently active feeds nobody follows by id are forgotten beyond `_MAX_TRACKED_RUNS`.
    """

    def __init__(self, store: EventStore, queue_size: int) -> None:
        self._store = store
        self._queue_size = queue_size
        self.feeds: OrderedDict[UUID, RunFeed] = OrderedDict()
        self.tenants: dict[str, TenantFeed] = {}
        self.dropped_total = 0
        """Subscribers dropped for a full queue since start."""

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently attached (per-run and tenant-wide)."""
        per_run = sum(len(feed.subscribers) for feed in self.feeds.values())
        return per_run + sum(len(t.subscribers) for t in self.tenants.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str, run_id: UUID | None) -> AsyncIterator[Subscription]:
        """Receive the events of `run_id` (of every run of `tenant` when None) from now on.

        Events committed after this returns are delivered; events committed before may be
        delivered too, so a caller that replays from the database afterwards skips ids it has
        sent. The caller must have checked that the run belongs to `tenant`.
        """
        sub = Subscription(tenant, run_id, self._queue_size)
        feed: RunFeed | None = None
        if run_id is None:
            # The floor is read before registering: rows of runs first seen later are fetched
            # from it, and rows committed before registration are at most re-sent, never lost.
            floor = await self._store.last_event_id(None)
            tenant_feed = self.tenants.get(tenant)
            if tenant_feed is None:
                tenant_feed = self.tenants[tenant] = TenantFeed(floor=floor, high=floor)
            tenant_feed.subscribers.add(sub)
        else:
            feed = self.feeds.get(run_id)
            if feed is None:
                feed = self.add_feed(run_id, tenant, cursor=None)
            feed.subscribers.add(sub)
        try:
            if feed is not None:
                async with feed.lock:
                    if feed.cursor is None:
                        # Everything up to here is committed, so the caller's replay (which
                        # starts after this) covers it; later rows have higher ids.
                        feed.cursor = await self._store.last_event_id(run_id)
            yield sub
        finally:
            self._unsubscribe(sub)

    def add_feed(self, run_id: UUID, tenant: str, cursor: int | None) -> RunFeed:
        """Start following `run_id` from `cursor` (None: set by its first subscriber)."""
        feed = self.feeds[run_id] = RunFeed(tenant=tenant, cursor=cursor)
        if len(self.feeds) > _MAX_TRACKED_RUNS:
            # Forget the least recently active runs nobody subscribes to by id.
            for old_id in list(self.feeds):
                if len(self.feeds) <= _MAX_TRACKED_RUNS:
                    break
                old = self.feeds[old_id]
                if not old.subscribers and not old.lock.locked() and old is not feed:
                    del self.feeds[old_id]
        return feed

    def end_feed(self, run_id: UUID, feed: RunFeed) -> None:
        """The run ended: forget its feed unless its tenant's dashboards still need it."""
        if feed.tenant not in self.tenants and self.feeds.get(run_id) is feed:
            del self.feeds[run_id]

    def deliver(self, subs: list[Subscription], item: Item) -> None:
        """Queue `item` for each of `subs`; drop those whose queue is full."""
        for sub in subs:
            if not sub._offer(item):
                self._drop(sub)

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.run_id is None:
            tenant_feed = self.tenants.get(sub.tenant)
            if tenant_feed is None:
                return
            tenant_feed.subscribers.discard(sub)
            if not tenant_feed.subscribers:
                del self.tenants[sub.tenant]
                # The tenant's cursors only served its dashboard streams.
                for run_id in [
                    run_id
                    for run_id, feed in self.feeds.items()
                    if feed.tenant == sub.tenant and not feed.subscribers
                ]:
                    del self.feeds[run_id]
            return
        feed = self.feeds.get(sub.run_id)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if not feed.subscribers and feed.tenant not in self.tenants:
            del self.feeds[sub.run_id]

    def _drop(self, sub: Subscription) -> None:
        sub._drop()
        self._unsubscribe(sub)
        self.dropped_total += 1
        log.info(
            "dropped an SSE subscriber of %s: its %d-event queue is full (slow client)",
            f"run {sub.run_id}" if sub.run_id else f"tenant {sub.tenant!r}",
            self._queue_size,
        )
