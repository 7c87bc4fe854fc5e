"""The gateway's aggregator and plugin catalog against a real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import (
    EventPayload,
    FailedPayload,
    LogPayload,
    MetricPayload,
    ProgressPayload,
    RunEventBase,
    StartedPayload,
    SucceededPayload,
    encode,
)
from runmesh.core.kafka import make_producer
from runmesh.core.notices import NOTIFY_CHANNEL
from runmesh.core.settings import Settings
from runmesh.core.testing import await_chain, eventually
from runmesh.core.topics import Topics
from runmesh.gateway.aggregator import Aggregator
from runmesh.gateway.plugin_catalog import PluginCatalog
from runmesh.gateway.run_state import RunSnapshot, apply_events

from .conftest import RunClient, WorkerFactory


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the sandbox database with the gateway's schema applied."""
    db = await create_pool(settings.database, min_size=1, max_size=6)
    await apply_migrations(db, "runs", load_migrations("runmesh.gateway"))
    yield db
    await db.close()


AggregatorFactory = Callable[..., contextlib.AbstractAsyncContextManager[Aggregator]]


@pytest.fixture
def aggregator(settings: Settings, pool: asyncpg.Pool) -> AggregatorFactory:
    """`async with aggregator() as agg:` runs an Aggregator task; leaving cancels it."""

    @contextlib.asynccontextmanager
    async def start(**kwargs: Any) -> AsyncIterator[Aggregator]:
        instance = Aggregator(settings.kafka, pool, **kwargs)
        task = asyncio.create_task(instance.run())
        try:
            yield instance
        finally:
            task.cancel()
            # asyncio.wait, not wait_for: a task that ignores its cancellation fails the test
            # with its stack instead of hanging it.
            await asyncio.wait({task}, timeout=30)
            if not task.done():
                stacks = "\n".join(
                    f"{other.get_name()}:\n{await_chain(other)}"
                    for other in asyncio.all_tasks()
                    if other is not asyncio.current_task()
                )
                pytest.fail(f"the aggregator did not stop when cancelled; tasks:\n{stacks}")
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    return start


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A producer for hand-made records on the test's topics."""
    instance = make_producer(settings.kafka)
    await instance.start()
    yield instance
    await instance.stop()


class Events:
    """Hand-made events of one run, with gapless seqs per attempt."""

    def __init__(self, run_id: uuid.UUID | None = None) -> None:
        self.run_id = run_id or uuid.uuid4()
        self._seq: dict[int, int] = {}
        self._ts = datetime.now(UTC)

    def make(self, event_type: str, payload: EventPayload, attempt: int = 1) -> RunEventBase:
        from runmesh.core.events import EVENT_TYPES

        self._seq[attempt] = self._seq.get(attempt, 0) + 1
        self._ts += timedelta(milliseconds=10)
        cls: Any = EVENT_TYPES[event_type]
        event: RunEventBase = cls(
            run_id=self.run_id,
            attempt=attempt,
            seq=self._seq[attempt],
            ts=self._ts,
            service="test",
            worker="hand",
            payload=payload,
        )
        return event

    def started(self, attempt: int = 1) -> RunEventBase:
        payload = StartedPayload(
            plugin="testkit", plugin_version="1.0.0", action="echo", params={"n": attempt}
        )
        return self.make("run.started", payload, attempt)

    def progress(self, current: float, total: float, attempt: int = 1) -> RunEventBase:
        payload = ProgressPayload(category="p", current=current, total=total)
        return self.make("run.progress", payload, attempt)

    def succeeded(self, attempt: int = 1) -> RunEventBase:
        return self.make("run.succeeded", SucceededPayload(result={"a": attempt}), attempt)


async def produce(
    producer: AIOKafkaProducer, settings: Settings, *events: RunEventBase | bytes
) -> None:
    """Publish events (or raw values) keyed like the worker does, and wait for the acks."""
    topic = Topics(settings.topic_prefix).events
    acks = []
    for event in events:
        if isinstance(event, bytes):
            acks.append(await producer.send(topic, event, key=b"garbage"))
        else:
            value = encode(event)
            acks.append(await producer.send(topic, value, key=str(event.run_id).encode()))
    await asyncio.gather(*acks)


async def run_row(pool: asyncpg.Pool, run_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM runs.runs WHERE id = $1", run_id)


async def stored(pool: asyncpg.Pool, run_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, event_id, attempt, seq, type, tenant, payload FROM runs.run_events"
        " WHERE run_id = $1 ORDER BY id",
        run_id,
    )


async def wait_state(
    pool: asyncpg.Pool, run_id: uuid.UUID, state: str, timeout: float = 20
) -> asyncpg.Record:
    async def reached() -> asyncpg.Record | None:
        row = await run_row(pool, run_id)
        return row if row is not None and row["state"] == state else None

    row: asyncpg.Record = await eventually(
        reached, timeout=timeout, message=f"run {run_id} never became {state}"
    )
    return row


def distinct(events: list[RunEventBase]) -> list[RunEventBase]:
    """The events as the aggregator should store them: first copy of each event_id."""
    seen: set[uuid.UUID] = set()
    result = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            result.append(event)
    return result


async def test_a_run_executed_by_a_worker_ends_succeeded_with_progress_and_metrics(
    client: RunClient, worker: WorkerFactory, aggregator: AggregatorFactory, pool: asyncpg.Pool
) -> None:
    async with aggregator(), worker():
        request = await client.submit("echo", {"name": "ada", "count": 40, "token": "s3cret"})
        await client.wait_terminal(request.run_id)
        row = await wait_state(pool, request.run_id, "succeeded")
    events = distinct(client.events[request.run_id])
    # Submitted straight to Kafka: the row was created from the events.
    assert row["submitted_via"] == "kafka"
    assert row["tenant"] == client.settings.tenant
    assert (row["category"], row["action"], row["plugin"]) == ("test", "echo", "testkit")
    assert row["plugin_version"] == "1.0.0"
    assert row["attempt"] == 1
    assert row["params_redacted"]["token"] == "**********"
    assert "s3cret" not in str(dict(row))
    assert row["progress"]["echo"]["percent"] == 100.0
    assert row["progress"]["echo"]["current"] == 40
    assert row["metrics"] == {"echo": {"count": 40}}
    assert row["result"] == {"name": "ada", "count": 40}
    assert row["error"] is None
    assert row["started_at"] == events[0].ts
    assert row["finished_at"] == events[-1].ts
    # Every event stored once, ids in (attempt, seq) order.
    rows = await stored(pool, request.run_id)
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert [(r["attempt"], r["seq"]) for r in rows] == sorted((e.attempt, e.seq) for e in events)
    assert {r["tenant"] for r in rows} == {client.settings.tenant}


async def test_a_rest_submitted_row_keeps_its_tenant_and_request(
    client: RunClient, worker: WorkerFactory, aggregator: AggregatorFactory, pool: asyncpg.Pool
) -> None:
    from runmesh.core.events import RunRequest

    request = RunRequest(category="test", action="echo", params={"name": "x", "count": 3})
    await pool.execute(
        "INSERT INTO runs.runs (id, tenant, category, action, params, params_redacted)"
        " VALUES ($1, 'tenant-rest', 'test', 'echo', $2, $2)",
        request.run_id,
        request.params,
    )
    async with aggregator(), worker():
        await client.send(request)
        row = await wait_state(pool, request.run_id, "succeeded")
    assert row["tenant"] == "tenant-rest"
    assert row["submitted_via"] == "rest"
    assert row["plugin"] is None  # requested as the built-in: what ran is plugin_version
    assert row["plugin_version"] == "1.0.0"
    assert row["params"] == {"name": "x", "count": 3}
    assert {r["tenant"] for r in await stored(pool, request.run_id)} == {"tenant-rest"}


async def test_a_run_first_seen_in_events_is_filed_under_their_tenant_and_category(
    settings: Settings,
    aggregator: AggregatorFactory,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    tagged, untagged = Events(), Events()
    # A train service running a neural_net request of tenant acme, and an event of a producer
    # older than the tenant and category fields.
    first = tagged.started().model_copy(
        update={"service": "train", "tenant": "acme", "category": "neural_net"}
    )
    old = untagged.started().model_copy(update={"service": "train"})
    async with aggregator():
        await produce(producer, settings, first, old)
        tagged_row = await wait_state(pool, tagged.run_id, "running")
        untagged_row = await wait_state(pool, untagged.run_id, "running")
    assert (tagged_row["tenant"], tagged_row["category"]) == ("acme", "neural_net")
    assert (untagged_row["tenant"], untagged_row["category"]) == (settings.tenant, "train")
    assert tagged_row["submitted_via"] == "kafka"
    assert {r["tenant"] for r in await stored(pool, tagged.run_id)} == {"acme"}


async def test_a_kafka_child_run_gets_its_parent_from_its_run_started(
    settings: Settings,
    aggregator: AggregatorFactory,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    parent, child = uuid.uuid4(), Events()
    started = child.started()
    payload = started.payload.model_copy(update={"parent_run_id": parent})  # type: ignore[union-attr]
    async with aggregator():
        await produce(producer, settings, started.model_copy(update={"payload": payload}))
        row = await wait_state(pool, child.run_id, "running")
        assert row["parent_run_id"] == parent
        # A later attempt's run.started without a parent does not erase it.
        await produce(producer, settings, child.started(attempt=2))
        row = await eventually(
            lambda: _attempt_of(pool, child.run_id, 2), message="attempt 2 never seen"
        )
    assert row["parent_run_id"] == parent


async def _attempt_of(pool: asyncpg.Pool, run_id: uuid.UUID, attempt: int) -> Any:
    row = await run_row(pool, run_id)
    return row if row is not None and row["attempt"] == attempt else None


async def test_stale_and_late_events_are_stored_but_change_nothing(
    settings: Settings,
    aggregator: AggregatorFactory,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    done, retried = Events(), Events()
    finished = [done.started(), done.progress(5, 10), done.succeeded()]
    late = done.progress(10, 10)
    first_try = [retried.started(1), retried.progress(1, 10, 1)]
    second_try = [retried.started(2), retried.progress(2, 10, 2)]
    zombie = [retried.progress(9, 10, 1), retried.succeeded(1)]
    async with aggregator() as agg:
        await produce(producer, settings, *finished, *first_try, *second_try)
        await wait_state(pool, done.run_id, "succeeded")
        await eventually(
            lambda: agg.events_stored == 7, timeout=20, message="the first 7 events stored"
        )
        # Late, stale, duplicated and undecodable records, in one go.
        await produce(
            producer, settings, late, *zombie, finished[1], b"\x00not json", b'{"type": "x"}'
        )
        await eventually(lambda: agg.events_stored == 10, timeout=20, message="3 more stored")
        await eventually(lambda: agg.records_skipped == 2, timeout=20)
    row = await run_row(pool, done.run_id)
    assert row is not None
    assert row["state"] == "succeeded"
    assert row["progress"]["p"]["current"] == 5
    assert row["result"] == {"a": 1}
    assert len(await stored(pool, done.run_id)) == 4  # the late one is kept, the copy not
    row = await run_row(pool, retried.run_id)
    assert row is not None
    assert (row["state"], row["attempt"]) == ("running", 2)
    assert row["progress"]["p"]["current"] == 2
    assert row["params_redacted"] == {"n": 2}
    assert row["result"] is None and row["finished_at"] is None
    events = await stored(pool, retried.run_id)
    # Stored in arrival order: the zombie's events after attempt 2's.
    assert [(e["attempt"], e["seq"]) for e in events] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (1, 3),
        (1, 4),
    ]


async def test_notifications_carry_tenant_last_id_and_terminal(
    settings: Settings,
    aggregator: AggregatorFactory,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    assert settings.database_url is not None
    listener = await asyncpg.connect(settings.database_url)
    received: list[dict[str, Any]] = []

    def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
        assert channel == NOTIFY_CHANNEL
        received.append(orjson.loads(payload))

    await listener.add_listener(NOTIFY_CHANNEL, on_notify)
    run = Events()
    try:
        async with aggregator():
            await produce(producer, settings, run.started(), run.progress(1, 2))

            def mine() -> list[dict[str, Any]]:
                return [n for n in received if n["run_id"] == str(run.run_id)]

            await eventually(mine, timeout=20, message="no notification")
            first_ids = [r["id"] for r in await stored(pool, run.run_id)]
            assert mine() == [
                {
                    "tenant": settings.tenant,
                    "run_id": str(run.run_id),
                    "last_id": max(first_ids),
                    "terminal": False,
                }
            ]
            await produce(producer, settings, run.progress(2, 2), run.succeeded())
            await eventually(lambda: len(mine()) >= 2, timeout=20, message="no 2nd notification")
            ids = [r["id"] for r in await stored(pool, run.run_id)]
            assert len(ids) == 4
            assert mine()[-1] == {
                "tenant": settings.tenant,
                "run_id": str(run.run_id),
                "last_id": max(ids),
                "terminal": True,
            }
            assert [n["terminal"] for n in mine()] == [False] * (len(mine()) - 1) + [True]
    finally:
        await listener.close()


def busy_run(rng: random.Random, index: int) -> list[RunEventBase]:
    """One run's events: progress, metrics and logs; some retried, some failing, some stale."""
    run = Events()
    events = [run.started()]
    attempt = 1
    if index % 5 == 0:  # the first worker died mid-run: attempt 2, and attempt 1 lingers
        events += [run.progress(k, 50) for k in range(1, 20)]
        events.append(run.started(attempt=2))
        events.append(run.progress(30, 50, attempt=1))  # stale: stored, ignored
        attempt = 2
    steps = rng.randint(60, 200)
    for step in range(1, steps + 1):
        events.append(run.progress(step, steps, attempt))
        if step % 10 == 0:
            events.append(
                run.make("run.metric", MetricPayload(category="m", values={"s": step}), attempt)
            )
        if step % 4 == 0:
            events.append(run.make("run.log", LogPayload(message=f"step {step}"), attempt))
    if index % 7 == 0:
        payload = FailedPayload(error_type="Boom", message="no", traceback="tb")
        events.append(run.make("run.failed", payload, attempt))
    else:
        events.append(run.succeeded(attempt))
    return events


@pytest.mark.slow
@pytest.mark.timeout(300)  # six group joins; a stuck aggregator fails its fixture in 30 s
async def test_aggregator_killed_mid_batch_loses_nothing_and_stores_nothing_twice(
    settings: Settings,
    aggregator: AggregatorFactory,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    rng = random.Random(7)
    runs = [busy_run(rng, i) for i in range(50)]
    # One stream interleaving the runs, each run's events in order (as partitions keep them).
    cursors = [0] * len(runs)
    stream: list[RunEventBase] = []
    while len(stream) < sum(map(len, runs)):
        i = rng.choice([i for i, run in enumerate(runs) if cursors[i] < len(run)])
        stream.append(runs[i][cursors[i]])
        cursors[i] += 1
    run_ids = [run[0].run_id for run in runs]

    async def stored_count() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM runs.run_events WHERE run_id = ANY($1::uuid[])", run_ids
        )
        return count

    cycles = 6
    chunk = len(stream) // cycles + 1
    produced = 0
    kills_with_work_left = 0
    for cycle in range(cycles):
        # Runs keep flowing while aggregators come and go.
        await produce(producer, settings, *stream[cycle * chunk : (cycle + 1) * chunk])
        produced = min(len(stream), (cycle + 1) * chunk)
        # Small batches: hundreds of transactions for the kill to land in.
        async with aggregator(max_records=rng.choice([2, 5, 11])) as agg:
            await eventually(agg.ready.is_set, timeout=30, message="aggregator not ready")
            await eventually(lambda agg=agg: agg.events_stored > 0, timeout=10, interval=0.001)
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # the random kill point
        if await stored_count() < produced:
            kills_with_work_left += 1
    assert kills_with_work_left >= cycles // 2, "the kills should land while work is left"
    async with aggregator():

        async def all_stored() -> bool:
            return await stored_count() == len(stream)

        await eventually(all_stored, timeout=60, message="events missing")
        for run in runs:
            terminal = "failed" if run[-1].type == "run.failed" else "succeeded"
            await wait_state(pool, run[0].run_id, terminal, timeout=30)
    for run in runs:
        rows = await stored(pool, run[0].run_id)
        assert [r["event_id"] for r in rows] == [e.event_id for e in run]
        expected = apply_events(RunSnapshot(), run)  # type: ignore[arg-type]
        row = await run_row(pool, run[0].run_id)
        assert row is not None
        assert (row["state"], row["attempt"]) == (expected.state, expected.attempt)
        assert row["progress"] == orjson.loads(orjson.dumps(expected.progress))
        assert row["progress"]["p"]["percent"] == 100.0
        assert row["metrics"] == expected.metrics
        assert row["result"] == expected.result
        assert row["error"] == expected.error
        assert (row["started_at"], row["finished_at"]) == (
            expected.started_at,
            expected.finished_at,
        )


async def test_plugin_manifests_from_a_worker_start_appear_in_the_catalog(
    settings: Settings, worker: WorkerFactory, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    began = await pool.fetchval("SELECT now()")
    catalog = PluginCatalog(settings.kafka, pool)
    task = asyncio.create_task(catalog.run())
    try:
        await producer.send_and_wait(Topics(settings.topic_prefix).plugins, b"{not a manifest")
        async with worker() as running:

            async def announced() -> asyncpg.Record | None:
                return await pool.fetchrow(
                    "SELECT * FROM runs.plugins WHERE tenant = '*' AND code = 'testkit'"
                    " AND version = '1.0.0' AND manifest->>'worker' = $1",
                    running.worker_id,
                )

            row = await eventually(announced, timeout=30, message="manifest not stored")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert row["category"] == "test"
    assert row["builtin"] is False
    assert row["announced_at"] >= began
    manifest = row["manifest"]
    assert manifest["code"] == "testkit" and manifest["name"] == "Test kit"
    assert manifest["actions"]["echo"]["params_schema"]["required"] == ["name", "count"]
    assert manifest["actions"]["echo"]["progress_categories"]["echo"]["proportion"] == 100
    assert catalog.manifests_stored >= 1
