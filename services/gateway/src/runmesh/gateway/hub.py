"""In-memory fan-out of stored run events to SSE subscribers, driven by one LISTEN connection.

The aggregator commits events to `runs.run_events` and then NOTIFYs `runmesh_events` once per
run it touched. `EventHub.run` holds one dedicated connection listening on that channel for
the whole process; on each notification it reads the run's new rows once and copies them into
the bounded queue of every subscriber of that run and every tenant-wide subscriber of its
tenant. A subscriber whose queue is full is dropped (its stream ends and the client resumes
with `Last-Event-ID`), so a slow client never makes the gateway's memory grow.

Ordering and completeness rest on one property of the schema: within one run, `run_events.id`
grows in commit order (a run's events share a Kafka partition, which one aggregator inserts in
order, one transaction per batch). So a per-run cursor "highest id fetched" is exact, and a
subscriber that replays from the database after subscribing, then skips live rows with an id
it already sent, sees every row once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from uuid import UUID

import asyncpg
import orjson

from runmesh.common.errors import DependencyUnavailableError
from runmesh.common.events import TERMINAL_EVENT_TYPES, TERMINAL_STATES
from runmesh.common.settings import Settings

log = logging.getLogger(__name__)

CHANNEL: Final = "runmesh_events"
"""The NOTIFY channel the aggregator (and the cancel watchdog) signal run changes on."""

LISTENER_APPLICATION_NAME: Final = "runmesh-gateway-listen"
"""`application_name` of the LISTEN connection."""

PAGE_SIZE: Final = 500
"""Rows per query when catching up a run: bounds the memory one fetch can take."""

_CONNECT_TIMEOUT_S: Final = 10.0
_QUERY_TIMEOUT_S: Final = 10.0
_KEEPALIVE_INTERVAL_S: Final = 5.0  # a silently dead LISTEN connection is noticed within ~10 s
_RETRY_DELAY_S: Final = 1.0  # before re-reading runs whose fetch failed
_MAX_CONCURRENT_FETCHES: Final = 8  # leave most of the pool to HTTP requests
_MAX_TRACKED_RUNS: Final = 10_000  # per-run cursors kept for tenant-wide subscribers
_MAX_RESYNC_RUNS: Final = 1_000  # runs of one tenant re-read after a reconnect

# Errors of one database round trip: the run is retried, or the listener restarted.
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_EVENT_COLUMNS: Final = (
    "id, event_id, run_id, tenant, attempt, seq, type, ts, service, worker,"
    " payload::text AS payload"  # stored JSON is sent as is (see StoredEvent)
)


@dataclass(slots=True, frozen=True)
class StoredEvent:
    """One row of `runs.run_events`, serialized once for every client that receives it.

    `data` is the event as JSON (id, event_id, run_id, attempt, seq, type, ts, service, worker,
    payload) and `frame` the complete SSE message carrying it; fan-out to N clients copies
    references, never re-encodes.
    """

    id: int
    run_id: UUID
    tenant: str
    type: str
    data: bytes
    frame: bytes

    @property
    def is_terminal_event(self) -> bool:
        """Whether this is a `run.succeeded`, `run.failed` or `run.cancelled` event."""
        return self.type in TERMINAL_EVENT_TYPES

    @classmethod
    def from_record(cls, record: asyncpg.Record | dict[str, Any]) -> StoredEvent:
        """Build from a row selected with the hub's event columns (payload as JSON text)."""
        event_type: str = record["type"]
        data = orjson.dumps(
            {
                "id": record["id"],
                "event_id": str(record["event_id"]),
                "run_id": str(record["run_id"]),
                "attempt": record["attempt"],
                "seq": record["seq"],
                "type": event_type,
                "ts": record["ts"],
                "service": record["service"],
                "worker": record["worker"],
                # Stored JSON goes out as stored: no decode and re-encode per event.
                "payload": orjson.Fragment(record["payload"]),
            }
        )
        return cls(
            id=record["id"],
            run_id=record["run_id"],
            tenant=record["tenant"],
            type=event_type,
            data=data,
            frame=sse_frame(event_type, data, event_id=record["id"]),
        )


def sse_frame(event: str, data: bytes, *, event_id: int | None = None) -> bytes:
    """One SSE message. `data` is single-line JSON; CR/LF in `event` would break framing."""
    name = event.replace("\r", " ").replace("\n", " ").encode()
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + b"event: " + name + b"\ndata: " + data + b"\n\n"


class EventStore(Protocol):
    """The reads the hub and the SSE routes make; a fake replaces it in unit tests."""

    async def events_after(self, run_id: UUID, after: int, limit: int) -> list[StoredEvent]:
        """Events of `run_id` with id > `after`, by id, at most `limit`."""
        ...

    async def tenant_events_after(self, tenant: str, after: int, limit: int) -> list[StoredEvent]:
        """The latest `limit` events of `tenant` with id > `after`, by id."""
        ...

    async def last_event_id(self, run_id: UUID | None) -> int:
        """The highest event id of `run_id` (of every run when None); 0 if there is none."""
        ...

    async def run_state(self, run_id: UUID) -> str | None:
        """The state of `run_id` in `runs.runs`, or None if it has no row."""
        ...

    async def runs_with_events_after(self, tenant: str, after: int) -> list[tuple[UUID, int]]:
        """(run_id, highest id) of the tenant's runs with events after `after`."""
        ...


class PgEventStore:
    """`EventStore` over the gateway's pool; every query has a timeout."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def events_after(self, run_id: UUID, after: int, limit: int) -> list[StoredEvent]:
        """Events of `run_id` with id > `after`, by id, at most `limit`."""
        rows = await self._pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM runs.run_events"
            " WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            run_id,
            after,
            limit,
            timeout=_QUERY_TIMEOUT_S,
        )
        return [StoredEvent.from_record(row) for row in rows]

    async def tenant_events_after(self, tenant: str, after: int, limit: int) -> list[StoredEvent]:
        """The latest `limit` events of `tenant` with id > `after`, by id."""
        rows = await self._pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM runs.run_events"
            " WHERE tenant = $1 AND id > $2 ORDER BY id DESC LIMIT $3",
            tenant,
            after,
            limit,
            timeout=_QUERY_TIMEOUT_S,
        )
        return [StoredEvent.from_record(row) for row in reversed(rows)]

    async def last_event_id(self, run_id: UUID | None) -> int:
        """The highest event id of `run_id` (of every run when None); 0 if there is none."""
        if run_id is None:
            value = await self._pool.fetchval(
                "SELECT coalesce(max(id), 0) FROM runs.run_events", timeout=_QUERY_TIMEOUT_S
            )
        else:
            value = await self._pool.fetchval(
                "SELECT coalesce(max(id), 0) FROM runs.run_events WHERE run_id = $1",
                run_id,
                timeout=_QUERY_TIMEOUT_S,
            )
        return int(value)

    async def run_state(self, run_id: UUID) -> str | None:
        """The state of `run_id` in `runs.runs`, or None if it has no row."""
        state: str | None = await self._pool.fetchval(
            "SELECT state FROM runs.runs WHERE id = $1", run_id, timeout=_QUERY_TIMEOUT_S
        )
        return state

    async def runs_with_events_after(self, tenant: str, after: int) -> list[tuple[UUID, int]]:
        """(run_id, highest id) of the tenant's runs with events after `after`."""
        rows = await self._pool.fetch(
            "SELECT run_id, max(id) AS last_id FROM runs.run_events"
            " WHERE id > $2 AND tenant = $1 GROUP BY run_id LIMIT $3",
            tenant,
            after,
            _MAX_RESYNC_RUNS,
            timeout=_QUERY_TIMEOUT_S,
        )
        return [(row["run_id"], int(row["last_id"])) for row in rows]


@dataclass(slots=True, frozen=True)
class _RunEnded:
    state: str


class _Dropped:
    """Queued in place of everything else when a subscriber is dropped."""


_DROPPED: Final = _Dropped()

_Item = StoredEvent | _RunEnded | _Dropped


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
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=maxsize)

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
        if isinstance(item, _RunEnded):
            self.ended_state = item.state
            return None
        if isinstance(item, _Dropped):
            return None
        return item

    def __aiter__(self) -> AsyncIterator[StoredEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StoredEvent]:
        while (event := await self.get()) is not None:
            yield event

    # Called by the hub only.
    def _offer(self, item: _Item) -> bool:
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
        self._queue.put_nowait(_DROPPED)


@dataclass(slots=True)
class _RunFeed:
    """Per-run state: the highest id fetched, and who receives the run's events."""

    tenant: str
    cursor: int | None
    subscribers: set[Subscription] = field(default_factory=set)
    # Serializes fetches of this run, and a new subscriber's cursor set-up, so every row is
    # fetched and fanned out exactly once and in order.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _TenantFeed:
    """Tenant-wide subscribers of one tenant (the dashboard stream)."""

    floor: int  # global max event id when the first of them subscribed
    high: int  # highest event id fanned out to them (resume point after a reconnect)
    subscribers: set[Subscription] = field(default_factory=set)


@dataclass(slots=True)
class _Notice:
    """What the notifications received for one run since it was last processed say."""

    tenant: str
    last_id: int | None
    terminal: bool

    def merge(self, other: _Notice) -> None:
        if other.last_id is not None:
            self.last_id = max(self.last_id or 0, other.last_id)
        self.terminal = self.terminal or other.terminal


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
        self._feeds: OrderedDict[UUID, _RunFeed] = OrderedDict()
        self._tenants: dict[str, _TenantFeed] = {}
        # Notifications coalesce per run until processed: bounded by the number of runs, not
        # by the notification rate.
        self._pending: dict[UUID, _Notice] = {}
        self._wakeup = asyncio.Event()
        self._fetch_slots = asyncio.Semaphore(_MAX_CONCURRENT_FETCHES)
        self.listening = False
        """True while the LISTEN connection is up (readiness, tests)."""
        self.dropped_total = 0
        """Subscribers dropped for a full queue since start."""

    # ----------------------------------------------------------------- subscribers

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently attached (per-run and tenant-wide)."""
        per_run = sum(len(feed.subscribers) for feed in self._feeds.values())
        return per_run + sum(len(t.subscribers) for t in self._tenants.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str, run_id: UUID | None) -> AsyncIterator[Subscription]:
        """Receive the events of `run_id` (of every run of `tenant` when None) from now on.

        Events committed after this returns are delivered; events committed before may be
        delivered too, so a caller that replays from the database afterwards skips ids it has
        sent. The caller must have checked that the run belongs to `tenant`.
        """
        sub = Subscription(tenant, run_id, self._settings.sse_client_queue)
        feed: _RunFeed | None = None
        if run_id is None:
            # The floor is read before registering: rows of runs first seen later are fetched
            # from it, and rows committed before registration are at most re-sent, never lost.
            floor = await self.store.last_event_id(None)
            tenant_feed = self._tenants.get(tenant)
            if tenant_feed is None:
                tenant_feed = self._tenants[tenant] = _TenantFeed(floor=floor, high=floor)
            tenant_feed.subscribers.add(sub)
        else:
            feed = self._feeds.get(run_id)
            if feed is None:
                feed = self._add_feed(run_id, tenant, cursor=None)
            feed.subscribers.add(sub)
        try:
            if feed is not None:
                async with feed.lock:
                    if feed.cursor is None:
                        # Everything up to here is committed, so the caller's replay (which
                        # starts after this) covers it; later rows have higher ids.
                        feed.cursor = await self.store.last_event_id(run_id)
            yield sub
        finally:
            self._unsubscribe(sub)

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.run_id is None:
            tenant_feed = self._tenants.get(sub.tenant)
            if tenant_feed is None:
                return
            tenant_feed.subscribers.discard(sub)
            if not tenant_feed.subscribers:
                del self._tenants[sub.tenant]
                # The tenant's cursors only served its dashboard streams.
                for run_id in [
                    run_id
                    for run_id, feed in self._feeds.items()
                    if feed.tenant == sub.tenant and not feed.subscribers
                ]:
                    del self._feeds[run_id]
            return
        feed = self._feeds.get(sub.run_id)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if not feed.subscribers and feed.tenant not in self._tenants:
            del self._feeds[sub.run_id]

    def _add_feed(self, run_id: UUID, tenant: str, cursor: int | None) -> _RunFeed:
        feed = self._feeds[run_id] = _RunFeed(tenant=tenant, cursor=cursor)
        if len(self._feeds) > _MAX_TRACKED_RUNS:
            # Forget the least recently active runs nobody subscribes to by id.
            for old_id in list(self._feeds):
                if len(self._feeds) <= _MAX_TRACKED_RUNS:
                    break
                old = self._feeds[old_id]
                if not old.subscribers and not old.lock.locked() and old is not feed:
                    del self._feeds[old_id]
        return feed

    def _drop(self, sub: Subscription) -> None:
        sub._drop()
        self._unsubscribe(sub)
        self.dropped_total += 1
        log.info(
            "dropped an SSE subscriber of %s: its %d-event queue is full (slow client)",
            f"run {sub.run_id}" if sub.run_id else f"tenant {sub.tenant!r}",
            self._settings.sse_client_queue,
        )

    def _deliver(self, subs: list[Subscription], item: _Item) -> None:
        for sub in subs:
            if not sub._offer(item):
                self._drop(sub)

    # ----------------------------------------------------------------- notifications

    def notify(self, payload: str) -> None:
        """Take one `runmesh_events` notification: `{"tenant", "run_id", "last_id", "terminal"}`.

        Called from the LISTEN callback; only records the run as pending (cheap, never blocks).
        """
        try:
            message = orjson.loads(payload)
            run_id = UUID(str(message["run_id"]))
            tenant = str(message["tenant"])
            raw_last = message.get("last_id")
            notice = _Notice(
                tenant=tenant,
                last_id=int(raw_last) if raw_last is not None else None,
                terminal=bool(message.get("terminal", False)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("ignoring a malformed %s notification: %.200s", CHANNEL, payload)
            return
        self._enqueue(run_id, notice)

    def _enqueue(self, run_id: UUID, notice: _Notice) -> None:
        pending = self._pending.get(run_id)
        if pending is None:
            self._pending[run_id] = notice
        else:
            pending.merge(notice)
        self._wakeup.set()

    async def process_pending(self) -> bool:
        """Process every notification received so far; False if some run must be retried."""
        self._wakeup.clear()
        batch, self._pending = self._pending, {}
        if not batch:
            return True
        results = await asyncio.gather(*(self._process(r, n) for r, n in batch.items()))
        return all(results)

    async def _process(self, run_id: UUID, notice: _Notice) -> bool:
        try:
            async with self._fetch_slots:
                await self._fetch_and_fan_out(run_id, notice)
        except _DB_ERRORS as exc:
            log.warning("could not read new events of run %s (%s); retrying", run_id, exc)
            self._enqueue(run_id, notice)
            return False
        return True

    async def _fetch_and_fan_out(self, run_id: UUID, notice: _Notice) -> None:
        feed = self._feeds.get(run_id)
        if feed is None:
            tenant_feed = self._tenants.get(notice.tenant)
            if tenant_feed is None:
                return  # nobody listens: no query at all
            feed = self._add_feed(run_id, notice.tenant, cursor=tenant_feed.floor)
        else:
            self._feeds.move_to_end(run_id)
        async with feed.lock:
            if feed.cursor is None:  # a subscriber's set-up failed half-way
                feed.cursor = await self.store.last_event_id(run_id)
            if not notice.terminal and notice.last_id is not None and notice.last_id <= feed.cursor:
                return  # already fetched (a resync or an earlier notification got it)
            # The state is read before the rows: when it is terminal, the rows of the
            # transaction that made it so are committed and fetched below.
            state = await self.store.run_state(run_id) if notice.terminal else None
            while True:
                events = await self.store.events_after(run_id, feed.cursor, PAGE_SIZE)
                if events:
                    feed.cursor = events[-1].id
                    self._fan_out(feed, events)
                if len(events) < PAGE_SIZE:
                    break
            if state in TERMINAL_STATES:
                assert state is not None
                ended = list(feed.subscribers)
                feed.subscribers.clear()
                self._deliver(ended, _RunEnded(state))
                if feed.tenant not in self._tenants and self._feeds.get(run_id) is feed:
                    del self._feeds[run_id]

    def _fan_out(self, feed: _RunFeed, events: list[StoredEvent]) -> None:
        tenant_feed = self._tenants.get(feed.tenant)
        for event in events:
            # Re-read the subscriber sets per event: a drop removes its subscriber at once.
            subs = list(feed.subscribers)
            if tenant_feed is not None:
                subs.extend(tenant_feed.subscribers)
                tenant_feed.high = max(tenant_feed.high, event.id)
            self._deliver(subs, event)

    async def _resync(self) -> None:
        """After (re)connecting: re-read every subscribed run, as if all had been notified.

        Notifications sent while the connection was down are lost; each subscriber's cursor
        says where it stopped, and terminal runs are recognised by their state.
        """
        for run_id, feed in list(self._feeds.items()):
            if feed.subscribers:
                self._enqueue(run_id, _Notice(tenant=feed.tenant, last_id=None, terminal=True))
        for tenant, tenant_feed in list(self._tenants.items()):
            for run_id, last_id in await self.store.runs_with_events_after(
                tenant, tenant_feed.high
            ):
                self._enqueue(run_id, _Notice(tenant=tenant, last_id=last_id, terminal=False))

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if not await self.process_pending():
                await asyncio.sleep(_RETRY_DELAY_S)

    # ----------------------------------------------------------------- LISTEN connection

    async def run(self) -> None:
        """Listen on `runmesh_events` and fan out until cancelled.

        Raises `DependencyUnavailableError` when the connection is lost; the supervisor
        restarts this, and the restart re-reads every subscribed run.
        """
        if not self._settings.database_url:
            raise DependencyUnavailableError("RUNMESH_DATABASE_URL is not set")
        conn: asyncpg.Connection = await asyncpg.connect(
            self._settings.database_url,
            timeout=_CONNECT_TIMEOUT_S,
            # Named, so operators (and tests) can find it in pg_stat_activity.
            server_settings={"application_name": LISTENER_APPLICATION_NAME},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await conn.add_listener(CHANNEL, self._on_notification)
            self.listening = True
            await self._resync()
            tasks = [
                asyncio.create_task(self._dispatch_forever()),
                asyncio.create_task(self._watch(conn, lost)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises why it stopped (both loops only end by raising)
        finally:
            self.listening = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _close(conn)

    def _on_notification(
        self, _conn: asyncpg.Connection, _pid: int, _channel: str, payload: str
    ) -> None:
        self.notify(payload)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Raise once the LISTEN connection is closed or stops answering."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_KEEPALIVE_INTERVAL_S):
                    await lost.wait()
            if lost.is_set() or conn.is_closed():
                raise DependencyUnavailableError("the LISTEN connection to PostgreSQL was closed")
            try:
                await conn.fetchval("SELECT 1", timeout=_KEEPALIVE_INTERVAL_S)
            except _DB_ERRORS as exc:
                raise DependencyUnavailableError(
                    f"the LISTEN connection to PostgreSQL stopped answering: {exc}"
                ) from exc


async def _close(conn: asyncpg.Connection) -> None:
    """Close politely within a few seconds, else drop the socket."""
    if conn.is_closed():
        return
    try:
        async with asyncio.timeout(5):
            await conn.close()
    except _DB_ERRORS:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
