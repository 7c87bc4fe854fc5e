"""EventHub: fan-out, bounded queues, slow-client drops, terminal runs, reconnects.

Most tests drive the hub through `notify` + `process_pending` over an in-memory store; the
last ones run its LISTEN loop against the sandbox's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.errors import DependencyUnavailableError
from runmesh.core.notices import NOTIFY_CHANNEL, RunNotice, StreamedEvent
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway.hub import (
    LISTENER_APPLICATION_NAME,
    PAGE_SIZE,
    EventHub,
    StoredEvent,
    Subscription,
)
from runmesh.sandbox import Sandbox


def make_event(
    event_id: int, run_id: uuid.UUID, tenant: str, event_type: str = "run.log", size: int = 0
) -> StoredEvent:
    payload = {"level": "info", "message": f"event {event_id}", "data": {"pad": "x" * size}}
    return StoredEvent.from_record(
        {
            "id": event_id,
            "event_id": uuid.uuid4(),
            "run_id": run_id,
            "tenant": tenant,
            "attempt": 1,
            "seq": event_id,
            "type": event_type,
            "ts": datetime.now(UTC),
            "service": "test",
            "worker": "w1",
            "payload": orjson.dumps(payload).decode(),
        }
    )


class FakeStore:
    """`EventStore` over a list; counts calls and can fail on demand."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.states: dict[uuid.UUID, str] = {}
        self.calls: Counter[str] = Counter()
        self.failures = 0  # the next N calls raise OSError

    def add(self, run_id: uuid.UUID, tenant: str, event_type: str = "run.log") -> StoredEvent:
        event = make_event(len(self.events) + 1, run_id, tenant, event_type)
        self.events.append(event)
        self.states.setdefault(run_id, "running")
        return event

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.failures:
            self.failures -= 1
            raise OSError("database unreachable (fake)")

    async def events_after(self, run_id: uuid.UUID, after: int, limit: int) -> list[StoredEvent]:
        self._call("events_after")
        return [e for e in self.events if e.run_id == run_id and e.id > after][:limit]

    async def tenant_events_after(self, tenant: str, after: int, limit: int) -> list[StoredEvent]:
        self._call("tenant_events_after")
        return [e for e in self.events if e.tenant == tenant and e.id > after][-limit:]

    async def last_event_id(self, run_id: uuid.UUID | None) -> int:
        self._call("last_event_id")
        ids = [e.id for e in self.events if run_id is None or e.run_id == run_id]
        return max(ids, default=0)

    async def run_state(self, run_id: uuid.UUID) -> str | None:
        self._call("run_state")
        return self.states.get(run_id)

    async def runs_with_events_after(self, tenant: str, after: int) -> list[tuple[uuid.UUID, int]]:
        self._call("runs_with_events_after")
        last: dict[uuid.UUID, int] = {}
        for e in self.events:
            if e.tenant == tenant and e.id > after:
                last[e.run_id] = e.id
        return list(last.items())


def notice(run_id: uuid.UUID, tenant: str, last_id: int | None, terminal: bool = False) -> str:
    return RunNotice(
        tenant=tenant, run_id=run_id, last_id=last_id, terminal=terminal
    ).model_dump_json()


@contextlib.asynccontextmanager
async def many_subscribers(
    hub: EventHub, tenant: str, run_id: uuid.UUID, count: int
) -> AsyncIterator[list[Subscription]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(hub.subscribe(tenant, run_id)) for _ in range(count)]


def drain(sub: Subscription) -> list[int]:
    """Ids queued for `sub` right now (without waiting)."""
    ids: list[int] = []
    while sub.qsize():
        event = sub._queue.get_nowait()
        assert isinstance(event, StoredEvent)
        ids.append(event.id)
    return ids


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def make_hub(store: FakeStore, queue: int = 100) -> EventHub:
    settings = Settings(sse_client_queue=queue, database_url="postgresql://unused")
    return EventHub(settings, None, store=store)


async def test_events_fan_out_to_run_and_tenant_subscribers_only(store: FakeStore) -> None:
    hub = make_hub(store)
    run_a, run_b, run_other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with (
        hub.subscribe("t1", run_a) as a1,
        hub.subscribe("t1", run_a) as a2,
        hub.subscribe("t1", run_b) as b,
        hub.subscribe("t1", None) as dashboard,
        hub.subscribe("t2", None) as other_dashboard,
    ):
        assert hub.subscriber_count == 5
        ids_a = [store.add(run_a, "t1").id for _ in range(3)]
        ids_b = [store.add(run_b, "t1").id for _ in range(2)]
        store.add(run_other, "t2")
        for run_id, tenant in ((run_a, "t1"), (run_b, "t1"), (run_other, "t2")):
            hub.notify(notice(run_id, tenant, len(store.events)))
        assert await hub.process_pending()
        assert drain(a1) == ids_a
        assert drain(a2) == ids_a
        assert drain(b) == ids_b
        assert sorted(drain(dashboard)) == sorted(ids_a + ids_b)
        assert drain(other_dashboard) == [6]
    assert hub.subscriber_count == 0
    assert not hub.registry.feeds and not hub.registry.tenants  # nothing is kept for nobody


async def test_each_run_is_read_once_per_batch_of_notifications(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    async with many_subscribers(hub, "t1", run_id, 50) as subs:
        store.calls.clear()
        for _ in range(100):
            event = store.add(run_id, "t1")
            hub.notify(notice(run_id, "t1", event.id))  # coalesced until processed
        assert await hub.process_pending()
        assert store.calls["events_after"] == 1
        for sub in subs:
            assert drain(sub) == list(range(1, 101))
        # A notification for rows already fetched costs no query at all.
        hub.notify(notice(run_id, "t1", 100))
        assert await hub.process_pending()
        assert store.calls["events_after"] == 1


async def test_notifications_for_runs_nobody_follows_cost_nothing(store: FakeStore) -> None:
    hub = make_hub(store)
    async with hub.subscribe("t1", None):
        store.calls.clear()
        run_id = uuid.uuid4()
        store.add(run_id, "t2")
        hub.notify(notice(run_id, "t2", 1, terminal=True))
        assert await hub.process_pending()
    assert sum(store.calls.values()) == 0


async def test_a_large_batch_is_read_in_pages_in_order(store: FakeStore) -> None:
    hub = make_hub(store, queue=3 * PAGE_SIZE)
    run_id = uuid.uuid4()
    async with hub.subscribe("t1", run_id) as sub:
        for _ in range(2 * PAGE_SIZE + 7):
            store.add(run_id, "t1")
        hub.notify(notice(run_id, "t1", len(store.events)))
        assert await hub.process_pending()
        assert drain(sub) == list(range(1, 2 * PAGE_SIZE + 8))


async def test_a_subscriber_gets_rows_committed_after_it_subscribed(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    old = [store.add(run_id, "t1").id for _ in range(3)]
    async with hub.subscribe("t1", run_id) as sub:
        new = store.add(run_id, "t1").id
        hub.notify(notice(run_id, "t1", new))
        assert await hub.process_pending()
        assert drain(sub) == [new]  # the old ones are the caller's replay, from the store
    assert max(old) < new


async def test_the_dashboard_sees_runs_that_start_after_it_subscribed(store: FakeStore) -> None:
    hub = make_hub(store)
    earlier = uuid.uuid4()
    store.add(earlier, "t1")
    async with hub.subscribe("t1", None) as dashboard:
        later = uuid.uuid4()
        ids = [store.add(later, "t1").id, store.add(earlier, "t1").id]
        hub.notify(notice(later, "t1", ids[0]))
        hub.notify(notice(earlier, "t1", ids[1]))
        assert await hub.process_pending()
        assert sorted(drain(dashboard)) == ids


async def test_a_terminal_run_ends_its_streams_after_its_last_event(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    async with hub.subscribe("t1", run_id) as sub, hub.subscribe("t1", None) as dashboard:
        store.add(run_id, "t1")
        store.add(run_id, "t1", "run.succeeded")
        store.states[run_id] = "succeeded"
        hub.notify(notice(run_id, "t1", 2, terminal=True))
        assert await hub.process_pending()
        received = [event async for event in sub]  # ends by itself
        assert [e.id for e in received] == [1, 2]
        assert received[-1].is_terminal_event
        assert sub.ended_state == "succeeded" and not sub.dropped
        assert await sub.get(timeout=0.01) is None
        assert not dashboard.closed  # the dashboard stream never ends on its own
        assert drain(dashboard) == [1, 2]
        assert hub.subscriber_count == 1


async def test_a_run_ended_without_a_terminal_event_still_ends(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    store.add(run_id, "t1")
    async with hub.subscribe("t1", run_id) as sub:
        store.states[run_id] = "cancelled"  # the gateway's cancel watchdog: no event
        hub.notify(notice(run_id, "t1", 1, terminal=True))
        assert await hub.process_pending()
        assert await sub.get(timeout=1) is None
        assert sub.ended_state == "cancelled"


async def test_terminal_flag_on_a_live_run_does_not_end_it(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    async with hub.subscribe("t1", run_id) as sub:
        store.add(run_id, "t1")
        hub.notify(notice(run_id, "t1", 1, terminal=True))  # state says running
        assert await hub.process_pending()
        event = await sub.get(timeout=1)
        assert event is not None and event.id == 1
        with pytest.raises(TimeoutError):
            await sub.get(timeout=0.05)
        assert not sub.closed


async def test_a_slow_client_is_dropped_and_its_buffer_freed(store: FakeStore) -> None:
    hub = make_hub(store, queue=3)
    run_id = uuid.uuid4()
    async with hub.subscribe("t1", run_id) as slow, hub.subscribe("t1", run_id) as fast:
        for round_ in range(5):
            for _ in range(2):
                store.add(run_id, "t1")
            hub.notify(notice(run_id, "t1", len(store.events)))
            assert await hub.process_pending()
            assert slow.qsize() <= 3  # the queue is bounded: never more than its size
            assert len(drain(fast)) == 2  # the reader keeps up and is never dropped
            if round_ == 0:
                assert not slow.dropped
        assert slow.dropped and not fast.dropped
        assert slow.qsize() <= 1  # only the wake-up marker: the buffered events are gone
        assert await slow.get(timeout=1) is None  # its stream ends at once
        assert hub.subscriber_count == 1  # the hub forgot it
        assert hub.dropped_total == 1


async def test_a_never_reading_client_does_not_grow_memory(store: FakeStore) -> None:
    """10,000 events of 1 KiB to a client that never reads: memory stays at its queue's size."""
    hub = make_hub(store, queue=8)
    run_id = uuid.uuid4()
    next_id = 0

    async def events_after(_run_id: uuid.UUID, after: int, limit: int) -> list[StoredEvent]:
        # Made on the fly and not kept, so what stays allocated is what the hub holds.
        return [make_event(i, run_id, "t1", size=1024) for i in range(after + 1, next_id + 1)]

    store.events_after = events_after  # type: ignore[method-assign]
    async with hub.subscribe("t1", run_id) as slow, hub.subscribe("t1", None) as slow_dashboard:
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for _ in range(100):
                next_id += 100
                hub.notify(notice(run_id, "t1", next_id))
                assert await hub.process_pending()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        assert slow.dropped and slow_dashboard.dropped
        assert grown < 256 * 1024, f"{grown} bytes kept for clients that never read"


async def test_a_failed_read_is_retried_without_losing_events(store: FakeStore) -> None:
    hub = make_hub(store)
    run_id = uuid.uuid4()
    async with hub.subscribe("t1", run_id) as sub:
        store.add(run_id, "t1")
        hub.notify(notice(run_id, "t1", 1))
        store.failures = 1
        assert not await hub.process_pending()  # failed: the run stays pending
        store.add(run_id, "t1")
        assert await hub.process_pending()
        assert drain(sub) == [1, 2]


async def test_malformed_notifications_are_ignored(store: FakeStore) -> None:
    hub = make_hub(store)
    for payload in ("not json", "[]", '{"tenant": "t1"}', '{"tenant": "t", "run_id": "x"}'):
        hub.notify(payload)
    assert not hub.fan_out.pending


async def test_resync_delivers_what_arrived_while_the_listener_was_down(store: FakeStore) -> None:
    hub = make_hub(store)
    run_a, run_b, run_new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with (
        hub.subscribe("t1", run_a) as a,
        hub.subscribe("t1", run_b) as b,
        hub.subscribe("t1", None) as dashboard,
    ):
        # No notifications: as if they were sent while the LISTEN connection was down.
        ids_a = [store.add(run_a, "t1").id, store.add(run_a, "t1", "run.failed").id]
        store.states[run_a] = "failed"
        ids_b = [store.add(run_b, "t1").id]
        ids_new = [store.add(run_new, "t1").id]
        await hub.fan_out.resync()
        assert await hub.process_pending()
        assert [e.id async for e in a] == ids_a and a.ended_state == "failed"
        assert drain(b) == ids_b and not b.closed
        assert sorted(drain(dashboard)) == sorted(ids_a + ids_b + ids_new)


def test_a_stored_event_goes_out_as_a_streamed_event() -> None:
    run_id = uuid.uuid4()
    event = make_event(7, run_id, "t1")
    streamed = StreamedEvent.model_validate_json(event.data)
    assert (streamed.id, streamed.run_id, streamed.type) == (7, run_id, "run.log")
    assert streamed.payload["message"] == "event 7"  # the stored JSON, as stored
    assert list(orjson.loads(event.data)) == list(StreamedEvent.model_fields)
    assert event.frame == b"id: 7\nevent: run.log\ndata: " + event.data + b"\n\n"


# --------------------------------------------------------------------- real PostgreSQL


@pytest.fixture
async def pool(sandbox: Sandbox) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(sandbox.settings.database, min_size=1, max_size=4)
    await apply_migrations(pool, "runs", load_migrations("runmesh.gateway"))
    yield pool
    await pool.close()


async def _store_event(pool: asyncpg.Pool, run_id: uuid.UUID, tenant: str, notify: bool) -> int:
    """Insert one event as the aggregator does (NOTIFY in the same transaction)."""
    async with pool.acquire() as conn, conn.transaction():
        event_id: int = await conn.fetchval(
            "INSERT INTO runs.run_events"
            " (event_id, run_id, tenant, attempt, seq, type, ts, service, worker, payload)"
            " VALUES ($1, $2, $3, 1, 1, 'run.log', now(), 'test', 'w1', $4) RETURNING id",
            uuid.uuid4(),
            run_id,
            tenant,
            {"level": "info", "message": "hello"},
        )
        if notify:
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, notice(run_id, tenant, event_id)
            )
    return event_id


async def _run_row(pool: asyncpg.Pool, tenant: str) -> uuid.UUID:
    run_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO runs.runs (id, tenant, category, action, state)"
        " VALUES ($1, $2, 'test', 'echo', 'running')",
        run_id,
        tenant,
    )
    return run_id


async def _next_ids(sub: Subscription, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        event = await sub.get(timeout=10)
        assert event is not None
        ids.append(event.id)
    return ids


async def test_listen_connection_fans_out_and_survives_a_reconnect(
    sandbox: Sandbox, pool: asyncpg.Pool
) -> None:
    settings = sandbox.settings.model_copy(update={"sse_client_queue": 100})
    hub = EventHub(settings, pool)
    tenant = f"hub-{uuid.uuid4().hex[:8]}"
    run_id = await _run_row(pool, tenant)
    task: asyncio.Task[Any] = asyncio.create_task(hub.run())
    try:
        await eventually(lambda: hub.listening, timeout=10, message="hub never listened")
        async with hub.subscribe(tenant, run_id) as sub, hub.subscribe(tenant, None) as dash:
            first = await _store_event(pool, run_id, tenant, notify=True)
            assert await _next_ids(sub, 1) == [first]
            assert await _next_ids(dash, 1) == [first]

            # Kill the LISTEN backend: run() must raise, for the supervisor to restart it.
            killed = await pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                LISTENER_APPLICATION_NAME,
            )
            assert killed >= 1
            with pytest.raises(DependencyUnavailableError):
                await asyncio.wait_for(task, 20)
            assert not hub.listening

            # Written while nobody listens; the notification is lost for good.
            missed = [await _store_event(pool, run_id, tenant, notify=True) for _ in range(3)]
            other_run = await _run_row(pool, tenant)
            missed_other = await _store_event(pool, other_run, tenant, notify=True)

            task = asyncio.create_task(hub.run())  # what `supervise` does
            assert await _next_ids(sub, 3) == missed
            assert sorted(await _next_ids(dash, 4)) == sorted([*missed, missed_other])

            # And it is live again.
            after = await _store_event(pool, run_id, tenant, notify=True)
            assert await _next_ids(sub, 1) == [after]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
