"""SSE delivery latency with 200 concurrent clients, and the gateway's memory with 1,000 idle.

Latency: 20 runs of the test kit's `sleep` action (50 steps over 5 s, so ~25 coalesced
`run.progress` events each) through an in-process Worker and an in-process gateway, each run
followed by 10 SSE clients (200 in all). For every progress event each client receives, the
latency is its receipt time minus the event's `ts`, which the worker sets when it builds the
event (same machine, same clock): publish, Kafka, aggregator, PostgreSQL + NOTIFY, the hub's
fan-out and HTTP. Reported: p50, p99, max over all (client, event) pairs; every client must
also have received every stored event of its run, in order.
Memory: the gateway as its own process (`python -m runmesh.gateway`) with 1,000 idle SSE
clients (10 on each of 100 queued runs) attached, heartbeating every second: its RSS.

Baseline, measured in the same runs: a bare aiokafka consumer on the events topic (what a
client reading Kafka itself would see: publish + broker only), its p99 over the same progress
events. Ratio = gateway p99 / Kafka p99: the price of aggregation, storage and fan-out.
The target (p99 < 250 ms) is printed beside it. The clients are minimal asyncio HTTP/1.1
readers, so the numbers measure the gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer

from runmesh.core.db import create_pool
from runmesh.core.events import TERMINAL_EVENT_TYPES, RunRequest, encode
from runmesh.core.kafka import ensure_topics, make_consumer, make_producer, pin_to_latest
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.app import create_app
from runmesh.gateway.tokens import create_token
from runmesh.plugins import PluginRegistry
from runmesh.sandbox import Sandbox
from runmesh.sandbox.processes import free_port
from runmesh.worker import Worker

CATEGORY = "test"  # the test kit's category
PLUGIN = Path(__file__).resolve().parent.parent / "tests" / "plugins" / "testkit"
RUNS = 20
CLIENTS_PER_RUN = 10
SLEEP_PARAMS = {"seconds": 5.0, "steps": 50}
IDLE_RUNS = 100
IDLE_CLIENTS = 1000
TARGET_P99_MS = 250.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ a minimal SSE client


class SSEClient:
    """One HTTP/1.1 SSE connection: chunked body decoded, frames split, receipt time kept."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self._port = port
        self._path = path
        self._token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection and read the response head; raise unless it is a 200 stream."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self._port), 30
        )
        self.reader, self.writer = reader, writer
        writer.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self._token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self._path}: {head.splitlines()[0].decode()}")

    async def frames(self) -> AsyncIterator[tuple[bytes, float]]:
        """(frame, receipt wall time) until the server ends the stream."""
        assert self.reader is not None
        buffer = b""
        while True:
            size_line = await asyncio.wait_for(self.reader.readline(), 60)
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), 60)
            received = time.time()
            buffer += chunk[:-2]
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                yield frame, received

    def close(self) -> None:
        """Drop the connection (the gateway sees a disconnect)."""
        if self.writer is not None:
            self.writer.close()


def parse(frame: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(event name, data) of a frame; (None, None) for comments and `retry:`."""
    event: str | None = None
    data: dict[str, Any] | None = None
    for line in frame.split(b"\n"):
        if line.startswith(b"event: "):
            event = line[7:].decode()
        elif line.startswith(b"data: "):
            data = orjson.loads(line[6:])
    return event, data


async def follow_run(client: SSEClient, latencies: list[float]) -> list[int]:
    """Read a run's stream to its end; latency of every progress event; the ids received."""
    ids: list[int] = []
    async for frame, received in client.frames():
        event, data = parse(frame)
        if data is None or "id" not in data:
            continue
        ids.append(data["id"])
        if event == "run.progress":
            sent = datetime.fromisoformat(data["ts"]).timestamp()
            latencies.append((received - sent) * 1000)
    return ids


# ------------------------------------------------------------------ latency: in process


async def _start_gateway(settings: Settings, port: int) -> tuple[uvicorn.Server, Any, Any]:
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=60, message="gateway")
    if task.done():
        task.result()
    return server, task, app


async def _insert_runs(pool: asyncpg.Pool, tenant: str, count: int, action: str) -> list[uuid.UUID]:
    """Rows first, so clients can subscribe before the first event (Kafka submissions)."""
    run_ids = [uuid.uuid4() for _ in range(count)]
    await pool.executemany(
        "INSERT INTO runs.runs (id, tenant, category, action, plugin, submitted_via)"
        " VALUES ($1, $2, $3, $4, 'testkit', 'kafka')",
        [(run_id, tenant, CATEGORY, action) for run_id in run_ids],
    )
    return run_ids


async def _submit(
    producer: Any,
    topics: Topics,
    run_ids: list[uuid.UUID],
    action: str,
    params: dict[str, Any],
    tenant: str,
) -> None:
    acks = [
        await producer.send(
            topics.requests(CATEGORY),
            encode(
                RunRequest(
                    run_id=run_id,
                    category=CATEGORY,
                    plugin="testkit",
                    action=action,
                    params=params,
                    tenant=tenant,
                )
            ),
            key=str(run_id).encode(),
        )
        for run_id in run_ids
    ]
    await asyncio.gather(*acks)


async def _warm_up(producer: Any, topics: Topics, pool: asyncpg.Pool, tenant: str) -> None:
    """One run end to end: the worker and the aggregator have joined their groups.

    Without it the first seconds measure Kafka group joins (the aggregator stores nothing
    until its partitions are assigned), not the event path.
    """
    (run_id,) = await _insert_runs(pool, tenant, 1, "noop")
    await _submit(producer, topics, [run_id], "noop", {}, tenant)

    async def succeeded() -> bool:
        state = await pool.fetchval("SELECT state FROM runs.runs WHERE id = $1", run_id)
        return bool(state == "succeeded")

    await eventually(succeeded, timeout=60, interval=0.1, message="warm-up run never ended")


async def kafka_latencies(
    consumer: AIOKafkaConsumer, run_ids: set[uuid.UUID], latencies: list[float]
) -> None:
    """Receipt latency of every progress event of `run_ids` read straight from Kafka."""
    ended: set[uuid.UUID] = set()
    while ended != run_ids:
        batches = await consumer.getmany(timeout_ms=1000)
        received = time.time()
        for records in batches.values():
            for record in records:
                if record.value is None:
                    continue
                event = orjson.loads(record.value)
                if uuid.UUID(event["run_id"]) not in run_ids:
                    continue
                if event["type"] == "run.progress":
                    sent = datetime.fromisoformat(event["ts"]).timestamp()
                    latencies.append((received - sent) * 1000)
                elif event["type"] in TERMINAL_EVENT_TYPES:
                    ended.add(uuid.UUID(event["run_id"]))


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in ms."""
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def measure_latency(settings: Settings) -> dict[str, Any]:
    """Percentiles of progress-event latency over 200 clients on 20 runs."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings.kafka, [topics.requests(CATEGORY), topics.events, topics.control])
    registry = PluginRegistry()
    registry.add_directory(PLUGIN)
    worker = Worker(
        CATEGORY,
        registry,
        settings.model_copy(
            update={"max_concurrent_runs": RUNS, "in_process_plugins": ["testkit"]}
        ),
    )
    worker_task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 60)
    port = free_port()
    server, server_task, app = await _start_gateway(settings, port)
    producer = make_producer(settings.kafka)
    await producer.start()
    direct = make_consumer(settings.kafka, topics.events, group_id=None, client_id="bench-direct")
    await direct.start()
    clients: list[SSEClient] = []
    try:
        await pin_to_latest(direct, timeout_s=30)
        pool: asyncpg.Pool = app.state.deps.pool
        hub = app.state.deps.hub
        await eventually(lambda: hub.listening, timeout=30, message="hub never listened")
        token = await create_token(pool, settings.tenant, "bench")
        await _warm_up(producer, topics, pool, settings.tenant)
        run_ids = await _insert_runs(pool, settings.tenant, RUNS, "sleep")
        clients = [
            SSEClient(port, f"/v1/runs/{run_id}/events", token)
            for run_id in run_ids
            for _ in range(CLIENTS_PER_RUN)
        ]
        await asyncio.gather(*(client.connect() for client in clients))
        await eventually(lambda: hub.subscriber_count == len(clients), timeout=30)
        latencies: list[float] = []
        kafka: list[float] = []
        direct_reader = asyncio.create_task(kafka_latencies(direct, set(run_ids), kafka))
        readers = [asyncio.create_task(follow_run(client, latencies)) for client in clients]
        log(f"{len(clients)} clients subscribed; starting {RUNS} runs")
        await _submit(producer, topics, run_ids, "sleep", SLEEP_PARAMS, settings.tenant)
        received = await asyncio.wait_for(asyncio.gather(*readers), 120)
        await asyncio.wait_for(direct_reader, 30)
        # Every client saw every stored event of its run, once, in order.
        for index, ids in enumerate(received):
            run_id = run_ids[index // CLIENTS_PER_RUN]
            stored = [
                r["id"]
                for r in await pool.fetch(
                    "SELECT id FROM runs.run_events WHERE run_id = $1 ORDER BY id", run_id
                )
            ]
            if ids != stored:
                raise AssertionError(f"client {index} of run {run_id}: {ids} != {stored}")
    finally:
        for client in clients:
            client.close()
        await producer.stop()
        await direct.stop()
        server.should_exit = True
        await asyncio.wait_for(server_task, 60)
        worker.request_stop()
        await asyncio.wait_for(worker_task, 60)
    return {
        "samples": len(latencies),
        **percentiles(latencies),
        "kafka": percentiles(kafka),
        "events_per_client": round(sum(map(len, received)) / len(received), 1),
    }


# ------------------------------------------------------------------ memory: a subprocess


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


async def _wait_healthy(port: int, process: asyncio.subprocess.Process, log_path: Path) -> None:
    async def healthy() -> bool:
        if process.returncode is not None:
            raise RuntimeError(f"gateway exited: {_tail(log_path)}")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        except OSError:
            return False
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return head.startswith(b"HTTP/1.1 200")

    await eventually(healthy, timeout=60, interval=0.2, message="gateway never healthy")


async def measure_idle_memory(settings: Settings, workdir: Path) -> dict[str, float]:
    """RSS of a gateway process with 1,000 idle SSE clients."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env |= settings.to_env() | {
        "RUNMESH_GATEWAY_PORT": str(port),
        "RUNMESH_SSE_HEARTBEAT_S": "1",
    }
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runmesh.gateway",
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    clients: list[SSEClient] = []
    readers: list[asyncio.Task[None]] = []
    heartbeats = [0] * IDLE_CLIENTS
    try:
        await _wait_healthy(port, process, log_path)
        pool = await create_pool(settings.database, min_size=1, max_size=2)
        try:
            token = await create_token(pool, settings.tenant, "bench-idle")
            run_ids = await _insert_runs(pool, settings.tenant, IDLE_RUNS, "sleep")
        finally:
            await pool.close()
        await asyncio.sleep(2)  # let start-up settle before the baseline
        before, _ = rss_mb(process.pid)

        async def idle(index: int, client: SSEClient) -> None:
            async for frame, _ in client.frames():
                if frame == b": heartbeat":
                    heartbeats[index] += 1

        per_run = IDLE_CLIENTS // IDLE_RUNS
        for start in range(0, IDLE_CLIENTS, 100):  # in waves: the listen backlog is finite
            wave = [
                SSEClient(port, f"/v1/runs/{run_ids[i // per_run]}/events", token)
                for i in range(start, start + 100)
            ]
            await asyncio.gather(*(client.connect() for client in wave))
            clients.extend(wave)
        readers = [asyncio.create_task(idle(i, c)) for i, c in enumerate(clients)]
        # Every stream is in its live loop (heartbeating), then a few more beats.
        await eventually(lambda: min(heartbeats) >= 1, timeout=60, message="no heartbeats")
        await asyncio.sleep(3)
        after, peak = rss_mb(process.pid)
        return {
            "rss_mb_no_clients": round(before, 1),
            "rss_mb_1000_idle": round(after, 1),
            "rss_mb_peak": round(peak, 1),
        }
    finally:
        for client in clients:
            client.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def main() -> None:
    async with Sandbox(Settings()) as sandbox:
        base = sandbox.settings.model_copy(
            update={
                "topic_prefix": f"b{uuid.uuid4().hex[:8]}",
                "tenant": f"bench-{uuid.uuid4().hex[:6]}",
            }
        )
        latency = await measure_latency(base)
        log(f"latency: {latency}")
        idle_settings = base.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}"})
        with tempfile.TemporaryDirectory(prefix="sse-bench-") as workdir:
            memory = await measure_idle_memory(idle_settings, Path(workdir))
        log(f"memory: {memory}")
    p99 = latency["p99_ms"]
    kafka_p99 = latency["kafka"]["p99_ms"]
    print(
        json.dumps(
            {
                "bench": "sse_latency",
                "value": p99,
                "unit": "ms",
                "baseline": kafka_p99,
                "ratio": round(p99 / kafka_p99, 3),
                "baseline_desc": "p99 of the same progress events read straight from Kafka "
                "by a bare aiokafka consumer (publish + broker only)",
                "target_p99_ms": TARGET_P99_MS,
                "p50_ms": latency["p50_ms"],
                "max_ms": latency["max_ms"],
                "samples": latency["samples"],
                "rss_mb_1000_idle": memory["rss_mb_1000_idle"],
                "rss_mb_no_clients": memory["rss_mb_no_clients"],
                "rss_target_mb": 150,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
