"""The gateway's outbox relay and cancel watchdog against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import CancelRun, RunRequest, decode
from runmesh.core.kafka import consumer_config
from runmesh.core.notices import NOTIFY_CHANNEL
from runmesh.core.settings import Settings
from runmesh.core.telemetry import header_value
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.cancellation import CancelWatchdog, cancel_run
from runmesh.gateway.outbox import CANCELLED_WHILE_QUEUED, OutboxRelay, enqueue
from runmesh.sandbox.processes import free_port


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the gateway's schema (migrated)."""
    db = await create_pool(settings.database, min_size=1, max_size=5)
    await apply_migrations(db, "runs", load_migrations("runmesh.gateway"))
    yield db
    await db.close()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


async def read_topic(settings: Settings, topic: str, count: int) -> list[Any]:
    """The first `count` records of `topic`."""
    config = consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"}
    consumer = AIOKafkaConsumer(topic, **config)
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=200)
                records += [r for batch in batches.values() for r in batch]
    finally:
        await consumer.stop()
    return records


async def topic_size(settings: Settings, topic: str) -> int:
    """How many records `topic` holds (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(**consumer_config(settings.kafka, group_id=None))
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await consumer.topics()  # refresh metadata once
            found = consumer.partitions_for_topic(topic) or set()
            partitions = [TopicPartition(topic, p) for p in sorted(found)]
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=10)
    finally:
        await consumer.stop()
    return sum(ends.values())


async def insert_run(conn: Any, run_id: uuid.UUID, state: str, **columns: Any) -> None:
    names = ["id", "tenant", "category", "action", "state", *columns]
    values = [run_id, "outbox-tests", "test", "noop", state, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(
        f"INSERT INTO runs.runs ({', '.join(names)}) VALUES ({placeholders})", *values
    )


async def settled(pool: asyncpg.Pool, ids: list[int]) -> None:
    """Wait until the relay has marked every row of `ids` sent (published or withdrawn)."""

    async def all_sent() -> bool:
        unsent = await pool.fetchval(
            "SELECT count(*) FROM runs.outbox WHERE id = ANY($1::bigint[]) AND sent_at IS NULL",
            ids,
        )
        return bool(unsent == 0)

    await eventually(all_sent, timeout=120, message=f"outbox rows {ids} never marked sent")


async def test_rows_are_published_in_order_with_trace_headers_and_marked_sent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topic = Topics(settings.topic_prefix).control
    run_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        ids = [
            await enqueue(
                conn,
                topic=topic,
                key=str(run_id),
                message=CancelRun(run_id=run_id, reason=f"reason {i}"),
                event_type="run.cancel",
            )
            for i in range(5)
        ]
    async with running(OutboxRelay(settings.kafka, pool)) as relay:
        relay.wake()
        records = await read_topic(settings, topic, 5)
        assert relay.kafka_reachable
        # A row is marked sent once its publish is acknowledged: after a consumer may see it.
        await settled(pool, ids)
    assert [decode(r.value, CancelRun).reason for r in records] == [f"reason {i}" for i in range(5)]
    for record in records:
        assert record.key == str(run_id).encode()
        assert header_value(record.headers, "event-type") == "run.cancel"
        assert (header_value(record.headers, "traceparent") or "").startswith("00-")
    rows = await pool.fetch(
        "SELECT sent_at, attempts, last_error FROM runs.outbox WHERE id = ANY($1::bigint[])", ids
    )
    assert all(row["sent_at"] is not None for row in rows)
    assert {(row["attempts"], row["last_error"]) for row in rows} == {(1, None)}


async def test_a_request_of_a_run_cancelled_while_queued_is_never_published(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    by_cancel, by_relay, marker = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        for run_id in (by_cancel, by_relay):
            await insert_run(conn, run_id, "queued")
            await enqueue(
                conn,
                topic=topics.requests("test"),
                key=str(run_id),
                message=RunRequest(run_id=run_id, category="test", action="noop"),
                event_type="run.request",
            )
    async with pool.acquire() as conn, conn.transaction():
        # The cancel finds the request unsent and withdraws it itself.
        outcome = await cancel_run(
            conn, topics=topics, tenant="outbox-tests", run_id=by_cancel, reason="test"
        )
        # This run was cancelled by an earlier cancel that found its row locked by a failed
        # publish attempt: the relay withdraws it when it next sees it.
        await conn.execute(
            "UPDATE runs.runs SET state = 'cancelled', finished_at = now() WHERE id = $1",
            by_relay,
        )
    assert outcome.ended and outcome.row["state"] == "cancelled"
    async with pool.acquire() as conn, conn.transaction():
        await insert_run(conn, marker, "queued")
        await enqueue(
            conn,
            topic=topics.requests("test"),
            key=str(marker),
            message=RunRequest(run_id=marker, category="test", action="noop"),
            event_type="run.request",
        )
    async with running(OutboxRelay(settings.kafka, pool)):
        records = await read_topic(settings, topics.requests("test"), 1)
        control = await read_topic(settings, topics.control, 1)
        await settled(
            pool,
            await pool.fetchval(
                "SELECT array_agg(id) FROM runs.outbox WHERE key = ANY($1::text[])",
                [str(by_cancel), str(by_relay), str(marker)],
            ),
        )
    assert [decode(r.value, RunRequest).run_id for r in records] == [marker]
    # The marker was published after the other rows were settled: nothing else is there.
    assert await topic_size(settings, topics.requests("test")) == 1
    assert decode(control[0].value, CancelRun).run_id == by_cancel
    withdrawn = await pool.fetch(
        "SELECT key, sent_at, last_error FROM runs.outbox"
        " WHERE key = ANY($1::text[]) AND topic = $2",
        [str(by_cancel), str(by_relay)],
        topics.requests("test"),
    )
    assert len(withdrawn) == 2
    assert all(row["sent_at"] is not None for row in withdrawn)
    assert {row["last_error"] for row in withdrawn} == {CANCELLED_WHILE_QUEUED}


async def test_rows_stay_unsent_with_their_errors_while_kafka_is_unreachable(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    run_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        row_id = await enqueue(
            conn,
            topic=Topics(settings.topic_prefix).control,
            key=str(run_id),
            message=CancelRun(run_id=run_id),
            event_type="run.cancel",
        )

    async def retried_twice() -> bool:
        row = await pool.fetchrow(
            "SELECT sent_at, attempts, last_error FROM runs.outbox WHERE id = $1", row_id
        )
        assert row["sent_at"] is None
        return bool(row["attempts"] >= 2 and row["last_error"])

    async with running(OutboxRelay(nowhere.kafka, pool, ack_timeout_s=1.0)) as relay:
        await eventually(retried_twice, timeout=20, message="the relay never retried")
        assert not relay.kafka_reachable
    last_error = await pool.fetchval("SELECT last_error FROM runs.outbox WHERE id = $1", row_id)
    assert "Kafka" in last_error or "Error" in last_error


async def test_the_watchdog_ends_overdue_cancels_and_notifies_sse(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    overdue, recent = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await insert_run(conn, overdue, "running", attempt=1)
        await insert_run(conn, recent, "running", attempt=1)
        await conn.execute(
            "UPDATE runs.runs SET cancel_requested_at = now() - interval '10 seconds'"
            " WHERE id = $1",
            overdue,
        )
        await conn.execute("UPDATE runs.runs SET cancel_requested_at = now() WHERE id = $1", recent)
        last_id = await conn.fetchval(
            "INSERT INTO runs.run_events (event_id, run_id, tenant, attempt, seq, type, ts,"
            " service, worker, payload) VALUES ($1, $2, 'outbox-tests', 1, 1, 'run.started',"
            " now(), 'test', 'w', '{}') RETURNING id",
            uuid.uuid4(),
            overdue,
        )
    notes: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
    listener = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: notes.put_nowait(args[-1]))
        watchdog = CancelWatchdog(settings.model_copy(update={"cancel_timeout_s": 5.0}), pool)
        ended = await watchdog.sweep()

        async def mine() -> dict[str, Any]:
            while True:
                note = orjson.loads(await notes.get())
                if note["run_id"] == str(overdue):
                    return note  # type: ignore[no-any-return]

        note = await asyncio.wait_for(mine(), timeout=10)
    finally:
        await listener.close(timeout=5)
    assert overdue in ended and recent not in ended
    assert note == {
        "tenant": "outbox-tests",
        "run_id": str(overdue),
        "last_id": last_id,
        "terminal": True,
    }
    rows = {
        row["id"]: row
        for row in await pool.fetch(
            "SELECT id, state, finished_at, error FROM runs.runs WHERE id = ANY($1::uuid[])",
            [overdue, recent],
        )
    }
    assert rows[overdue]["state"] == "cancelled" and rows[overdue]["finished_at"] is not None
    assert rows[overdue]["error"] is None
    assert rows[recent]["state"] == "running"
    assert overdue not in await watchdog.sweep()  # ended once
