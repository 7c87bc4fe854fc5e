"""Runs per second through one worker, against raw aiokafka doing the same Kafka traffic.

Value: 2,000 runs of a no-op action through one `Worker` (decode, attempt ledger, params
validation, run.started + run.succeeded published with acks, offsets committed), timed from
the first request to the last terminal event seen by a reader.
Baseline, measured in the same run on the same broker: a bare aiokafka consumer reading the
same 2,000 requests and producing two event records for each (same sizes), committing offsets;
no decoding, no database, no runtime. Ratio = runtime / baseline (aim: >= 0.5).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from runmesh.core.events import RunRequest, encode
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.plugins import PluginRegistry
from runmesh.sandbox import Sandbox
from runmesh.worker import Worker

RUNS = 2000
CATEGORY = "test"  # the test kit's category
PLUGIN = Path(__file__).resolve().parent.parent / "tests" / "plugins" / "testkit"


def _requests() -> list[RunRequest]:
    return [RunRequest(category=CATEGORY, action="noop", plugin="testkit") for _ in range(RUNS)]


async def _produce(settings: Settings, topic: str, requests: list[RunRequest]) -> float:
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        began = time.perf_counter()
        acks = [await producer.send(topic, encode(r), key=str(r.run_id).encode()) for r in requests]
        await asyncio.gather(*acks)
        return began
    finally:
        await producer.stop()


async def _count_terminal(settings: Settings, topic: str, expected: int) -> float:
    config = consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"}
    reader = AIOKafkaConsumer(topic, **config)
    await reader.start()
    seen: set[bytes] = set()
    terminal = {b"run.succeeded", b"run.failed", b"run.cancelled"}
    try:
        # Headers and key only, like the baseline's reader: the clock measures the worker.
        while len(seen) < expected:
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if dict(record.headers).get("event-type") in terminal and record.key:
                        seen.add(record.key)
        return time.perf_counter()
    finally:
        await reader.stop()


async def runtime_rate(settings: Settings) -> float:
    """Runs/s through a real Worker."""
    topics = Topics(settings.topic_prefix)
    registry = PluginRegistry()
    registry.add_directory(PLUGIN)
    worker = Worker(
        CATEGORY,
        registry,
        settings.model_copy(update={"max_concurrent_runs": 64, "in_process_plugins": ["testkit"]}),
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 60)
    try:
        reader = asyncio.create_task(_count_terminal(settings, topics.events, RUNS))
        cpu = time.process_time()
        began = await _produce(settings, topics.requests(CATEGORY), _requests())
        ended = await reader
        cpu = time.process_time() - cpu
        print(f"runtime: wall {ended - began:.2f}s, this process's CPU {cpu:.2f}s", file=sys.stderr)
    finally:
        worker.request_stop()
        await task
    return RUNS / (ended - began)


async def baseline_rate(settings: Settings) -> float:
    """Runs/s of raw aiokafka: consume each request, produce two events, commit."""
    topics = Topics(settings.topic_prefix + "raw")
    await ensure_topics(settings.kafka, [topics.requests(CATEGORY), topics.events])
    requests = _requests()
    started_size = 420  # bytes of a typical encoded run.started / run.succeeded event
    producer = make_producer(settings.kafka)
    consumer = AIOKafkaConsumer(
        topics.requests(CATEGORY),
        **consumer_config(settings.kafka, group_id=f"{topics.prefix}-raw"),
    )
    await producer.start()
    await consumer.start()
    # Like the worker: start the clock after the group join.
    await eventually(consumer.assignment, timeout=60, message="no partitions assigned")
    try:
        reader = asyncio.create_task(_count_raw(settings, topics.events, RUNS))
        began = await _produce(settings, topics.requests(CATEGORY), requests)
        handled = 0
        while handled < RUNS:
            batches = await consumer.getmany(timeout_ms=500, max_records=64)
            acks = []
            for records in batches.values():
                for record in records:
                    for kind in (b"run.started", b"run.succeeded"):
                        acks.append(
                            await producer.send(
                                topics.events,
                                b"x" * started_size,
                                key=record.key,
                                headers=[("event-type", kind)],
                            )
                        )
                    handled += 1
            await asyncio.gather(*acks)
            if acks:
                await consumer.commit()
        ended = await reader
    finally:
        await consumer.stop()
        await producer.stop()
    return RUNS / (ended - began)


async def _count_raw(settings: Settings, topic: str, runs: int) -> float:
    config = consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"}
    reader = AIOKafkaConsumer(topic, **config)
    await reader.start()
    count = 0
    try:
        while count < runs * 2:
            batches = await reader.getmany(timeout_ms=500)
            count += sum(len(records) for records in batches.values())
        return time.perf_counter()
    finally:
        await reader.stop()


ROUNDS = 3  # alternating rounds; the medians are compared (these machines are noisy)


async def main() -> None:
    gc.freeze()  # as the service entry point does after start-up (both sides of the ratio)
    baselines: list[float] = []
    values: list[float] = []
    async with Sandbox(Settings()) as sandbox:
        for _ in range(ROUNDS):
            base = sandbox.settings.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}"})
            await ensure_topics(base.kafka, [Topics(base.topic_prefix).events])
            baselines.append(await baseline_rate(base))
            values.append(await runtime_rate(base))
    baseline = statistics.median(baselines)
    value = statistics.median(values)
    print(f"worker runs/s by round: {[round(v) for v in values]}", file=sys.stderr)
    print(f"raw aiokafka runs/s by round: {[round(b) for b in baselines]}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "worker_throughput",
                "value": round(value, 1),
                "unit": "runs/s",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "runs": RUNS,
                "baseline_desc": "raw aiokafka consume + 2 produces per request + commit",
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
