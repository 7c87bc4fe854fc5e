"""`EventHub`: the subscription registry, the fan-out and the NOTIFY listener, put together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg

from runmesh.core.errors import DependencyUnavailableError
from runmesh.core.settings import Settings
from runmesh.gateway.hub.fan_out import FanOut
from runmesh.gateway.hub.listener import listen, parse_notice
from runmesh.gateway.hub.registry import SubscriptionRegistry
from runmesh.gateway.hub.stored_events import EventStore, PgEventStore
from runmesh.gateway.hub.subscription import Subscription


class EventHub:
    """Fans out new `runs.run_events` rows to subscribers, from one LISTEN connection.

    `run()` is the long-lived loop (started by the app's lifespan under `supervise`); it raises
    when the connection is lost and, once restarted, re-reads every subscribed run, so no
    subscriber misses an event across a reconnect. `subscribe()` works whether or not `run()`
    is running (events then simply arrive later).
    """

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool | None, *, store: EventStore | None = None
    ) -> None:
        if store is None:
            if pool is None:
                raise ValueError("EventHub needs a pool or a store")
            store = PgEventStore(pool)
        self.store: EventStore = store
        self._settings = settings
        self.registry = SubscriptionRegistry(store, settings.sse_client_queue)
        self.fan_out = FanOut(self.registry, store)
        self.listening = False
        """True while the LISTEN connection is up (readiness, tests)."""

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently attached (per-run and tenant-wide)."""
        return self.registry.subscriber_count

    @property
    def dropped_total(self) -> int:
        """Subscribers dropped for a full queue since start."""
        return self.registry.dropped_total

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str, run_id: UUID | None) -> AsyncIterator[Subscription]:
        """Receive the events of `run_id` (of every run of `tenant` when None) from now on.

        Events committed after this returns are delivered; events committed before may be
        delivered too, so a caller that replays from the database afterwards skips ids it has
        sent. The caller must have checked that the run belongs to `tenant`.
        """
        async with self.registry.subscribe(tenant, run_id) as sub:
            yield sub

    def notify(self, payload: str) -> None:
        """Take one notification's payload (a `RunNotice`); a malformed one is logged."""
        notice = parse_notice(payload)
        if notice is not None:
            self.fan_out.notify(notice)

    async def process_pending(self) -> bool:
        """Process every notice received so far; False if some run must be retried."""
        return await self.fan_out.process_pending()

    async def run(self) -> None:
        """Listen for run notices and fan out until cancelled.

        Raises `DependencyUnavailableError` when the connection is lost; the supervisor
        restarts this, and the restart re-reads every subscribed run.
        """
        if not self._settings.database_url:
            raise DependencyUnavailableError("RUNMESH_DATABASE_URL is not set")
        try:
            await listen(self._settings.database_url, self.fan_out.notify, self._serve)
        finally:
            self.listening = False

    async def _serve(self) -> None:
        self.listening = True
        await self.fan_out.resync()
        await self.fan_out.dispatch_forever()
