"""Run events per second through the gateway's aggregator, against raw aiokafka consumption.

Value: 200 runs x 500 events (run.started, a mix of run.progress / run.log / run.metric, and a
terminal event; realistic JSON as the worker encodes it), already on the events topic, ingested
by one `Aggregator` into PostgreSQL: decode and validate, insert with event_id dedup, apply the
run state machine, upsert the run rows, NOTIFY, commit offsets. Timed from the moment its
consumer owns the partitions until every run row is terminal and all 100,000 events are
stored.
Baseline, measured in the same run on the same broker: a bare aiokafka group consumer
reading the same 100,000 records (no decoding, no database), committing offsets per batch as
the aggregator does, timed from its assignment to the last record. Ratio = value / baseline.
Targets: >= 20,000 events/s and a ratio >= 0.3.

For context the JSON also carries `pg_floor`: events/s of PostgreSQL alone taking the same rows
through the aggregator's own INSERT statement (5,000 rows per statement, columns prepared
before the clock starts, no Kafka, no decoding, no run state). No aggregator can beat it on
this machine, so `value / pg_floor` says how much of the ceiling the aggregator reaches.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import statistics
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import (
    EVENT_TYPES,
    EventPayload,
    LogPayload,
    MetricPayload,
    ProgressPayload,
    StartedPayload,
    SucceededPayload,
    encode,
)
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.aggregator import _INSERT_EVENTS, Aggregator
from runmesh.sandbox import Sandbox

RUNS = 200
EVENTS_PER_RUN = 500
EVENTS = RUNS * EVENTS_PER_RUN
DEADLINE_S = 120.0  # far above a healthy round (seconds); a stuck one fails
ROUNDS = 3  # alternating rounds; the medians are compared (these machines are noisy)


def _run_events(rng: random.Random) -> tuple[uuid.UUID, list[bytes]]:
    """One run's encoded events, as a train-like action would report them."""
    run_id = uuid.uuid4()
    worker = f"bench-host:{rng.randint(1000, 9999)}:{uuid.uuid4().hex[:6]}"
    seq = 0

    def event(event_type: str, payload: EventPayload) -> bytes:
        nonlocal seq
        seq += 1
        cls: Any = EVENT_TYPES[event_type]
        return encode(
            cls(run_id=run_id, attempt=1, seq=seq, service="train", worker=worker, payload=payload)
        )

    params = {
        "dataset": "s3://datasets/coco-2017/train",
        "epochs": 30,
        "batch_size": 64,
        "learning_rate": 0.001,
        "api_key": "**********",
    }
    values = [
        event(
            "run.started",
            StartedPayload(plugin="yolo", plugin_version="2.3.1", action="train", params=params),
        )
    ]
    middle = EVENTS_PER_RUN - 2
    for i in range(1, middle + 1):
        kind = i % 3
        if kind == 0:
            payload: EventPayload = ProgressPayload(
                category="train" if i > middle // 4 else "download", current=i, total=middle
            )
            values.append(event("run.progress", payload))
        elif kind == 1:
            payload = LogPayload(
                level="info",
                message=f"epoch {i // 16} batch {i % 16}: loss {rng.random():.4f}",
                data={"epoch": i // 16, "batch": i % 16, "lr": 0.001},
            )
            values.append(event("run.log", payload))
        else:
            payload = MetricPayload(
                category="train",
                values={"loss": rng.random(), "accuracy": rng.random(), "map50": rng.random()},
                step=i,
            )
            values.append(event("run.metric", payload))
    result = {"model": f"s3://models/{run_id}/best.pt", "map50": 0.71, "epochs": 30}
    values.append(event("run.succeeded", SucceededPayload(result=result)))
    return run_id, values


def _records() -> tuple[list[uuid.UUID], list[tuple[bytes, bytes]]]:
    """Every run's events interleaved (runs progress side by side), keyed by run_id."""
    rng = random.Random(42)
    runs = [_run_events(rng) for _ in range(RUNS)]
    records = [
        (str(run_id).encode(), values[i]) for i in range(EVENTS_PER_RUN) for run_id, values in runs
    ]
    return [run_id for run_id, _ in runs], records


async def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        acks = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def baseline_rate(settings: Settings, topic: str) -> float:
    """Events/s of a bare aiokafka group consumer reading the records and committing."""
    consumer = AIOKafkaConsumer(
        topic, **consumer_config(settings.kafka, group_id=f"{settings.topic_prefix}-raw")
    )
    await consumer.start()
    try:
        await eventually(consumer.assignment, timeout=60, message="no partitions assigned")
        began = time.perf_counter()
        count = 0
        while count < EVENTS:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            count += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in batches.items()}
                )
        ended = time.perf_counter()
    finally:
        await consumer.stop()
    return EVENTS / (ended - began)


async def aggregator_rate(
    settings: Settings, pool: asyncpg.Pool, run_ids: list[uuid.UUID]
) -> float:
    """Events/s of the Aggregator, from its assignment until every run is stored and ended."""
    aggregator = Aggregator(settings.kafka, pool)
    task = asyncio.create_task(aggregator.run())
    try:
        await asyncio.wait_for(aggregator.ready.wait(), 60)
        began = time.perf_counter()
        cpu = time.process_time()
        ended = 0.0
        while not ended:
            ended_runs = await pool.fetchval(
                "SELECT count(*) FROM runs.runs WHERE id = ANY($1::uuid[])"
                " AND state IN ('succeeded', 'failed', 'cancelled')",
                run_ids,
            )
            if ended_runs == RUNS:
                ended = time.perf_counter()
            elif task.done():
                task.result()  # raises what stopped the aggregator
                raise RuntimeError("the aggregator stopped before every run ended")
            elif time.perf_counter() - began > DEADLINE_S:
                raise RuntimeError(f"{ended_runs} of {RUNS} runs ended after {DEADLINE_S}s")
            else:
                await asyncio.sleep(0.02)
        cpu = time.process_time() - cpu
        stored = await pool.fetchval(
            "SELECT count(*) FROM runs.run_events WHERE run_id = ANY($1::uuid[])", run_ids
        )
        if stored != EVENTS:
            raise RuntimeError(f"{stored} events stored, expected {EVENTS}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    print(f"aggregator: wall {ended - began:.2f}s, this process's CPU {cpu:.2f}s", file=sys.stderr)
    return EVENTS / (ended - began)


async def pg_floor_rate(pool: asyncpg.Pool, records: list[tuple[bytes, bytes]]) -> float:
    """Events/s of the aggregator's INSERT alone, over pre-built columns (see the docstring)."""
    batches: list[list[list[Any]]] = []
    for start in range(0, len(records), 5000):
        columns: list[list[Any]] = [[] for _ in range(10)]
        for _, value in records[start : start + 5000]:
            event = orjson.loads(value)
            row = (
                uuid.UUID(event["event_id"]),
                uuid.UUID(event["run_id"]),
                "bench",
                event["attempt"],
                event["seq"],
                event["type"],
                datetime.fromisoformat(event["ts"]),
                event["service"],
                event["worker"],
                orjson.dumps(event["payload"]).decode(),
            )
            for column, item in zip(columns, row, strict=True):
                column.append(item)
        batches.append(columns)
    await pool.execute("TRUNCATE runs.run_events")
    began = time.perf_counter()
    async with pool.acquire() as conn:
        for columns in batches:
            async with conn.transaction():
                await conn.fetch(_INSERT_EVENTS, *columns)
    return EVENTS / (time.perf_counter() - began)


async def main() -> None:
    gc.freeze()  # as the service entry point does after start-up (both sides of the ratio)
    baselines: list[float] = []
    values: list[float] = []
    floors: list[float] = []
    async with Sandbox(Settings()) as sandbox:
        pool = await create_pool(sandbox.settings.database, min_size=2, max_size=4)
        try:
            await apply_migrations(pool, "runs", load_migrations("runmesh.gateway"))
            for _ in range(ROUNDS):
                # The bench owns this sandbox's database: every round starts from empty tables.
                # CASCADE: tables that reference runs (pipelines, schedules) are empty here too.
                await pool.execute("TRUNCATE runs.run_events, runs.runs CASCADE")
                prefix = f"b{uuid.uuid4().hex[:8]}"
                settings = sandbox.settings.model_copy(update={"topic_prefix": prefix})
                topic = Topics(prefix).events
                await ensure_topics(settings.kafka, [topic])
                run_ids, records = _records()
                await _produce(settings, topic, records)
                baselines.append(await baseline_rate(settings, topic))
                values.append(await aggregator_rate(settings, pool, run_ids))
                floors.append(await pg_floor_rate(pool, records))
        finally:
            await pool.close()
    baseline = statistics.median(baselines)
    value = statistics.median(values)
    floor = statistics.median(floors)
    print(f"aggregator events/s by round: {[round(v) for v in values]}", file=sys.stderr)
    print(f"raw aiokafka events/s by round: {[round(b) for b in baselines]}", file=sys.stderr)
    print(
        f"PostgreSQL insert floor events/s by round: {[round(f) for f in floors]}", file=sys.stderr
    )
    print(
        json.dumps(
            {
                "bench": "event_ingest",
                "value": round(value, 1),
                "unit": "events/s",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "events": EVENTS,
                "runs": RUNS,
                "baseline_desc": "raw aiokafka group consumer, no decoding, commit per batch",
                "pg_floor": round(floor, 1),
                "ratio_to_pg_floor": round(value / floor, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
