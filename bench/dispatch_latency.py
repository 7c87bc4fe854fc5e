"""The dispatcher's cost: 2,000 no-op runs admitted through the gateway (priorities, fair
shares and a tenant limit on) against the same runs produced straight to the requests topic.

An in-process gateway and worker on the embedded sandbox run the test kit's `noop` action (in
the worker's process, so what is measured is the platform, not a fork). Each way, the runs
wait while no worker serves the category, then one worker drains them:
- scheduled: submitted with `POST /v1/runs` by two tenants, one of them with a `max_running`
  limit (far above what it uses, so it is read, locked and counted at every admission, never
  reached), priorities 1-9 in turn; held in PostgreSQL, the dispatcher admits them onto the
  topic as the pool's window has room;
- direct (baseline): a `RunRequest` per run produced straight to the requests topic: no
  gateway before the worker.
Drain rate = runs / (first `run.started` → last `run.succeeded`, on the tenants' SSE streams).
Value = scheduled drain rate, baseline = direct drain rate, ratio = value / baseline (aim
≥ 0.8). The REST submission rate is reported beside. Then, with the worker idle,
`--latency-runs` single runs: REST answer (`queued`) → `run.started` on the stream, p50 and
p99 (aim p99 < 100 ms when a slot is free). `--runs N` sets the runs per way (default 2,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from support.mesh import local_mesh, mesh_worker
from support.tenants import Stream, tenant

from runmesh.core.events import RunRequest, encode
from runmesh.core.kafka import make_producer
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.tenant_limits import set_limit

CONCURRENCY = 32
WARM_UP = 20


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def in_parallel(count: int, one: Callable[[int], Awaitable[None]]) -> None:
    """`one(i)` for i in range(count), `CONCURRENCY` at a time."""
    next_index = iter(range(count))

    async def lane() -> None:
        for index in next_index:
            await one(index)

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))


def drain_rate(streams: list[Stream], ids: list[str]) -> float:
    """Runs per second from the first `run.started` of `ids` to their last end."""
    started = [stream.started[i] for stream in streams for i in ids if i in stream.started]
    ended = [stream.ended[i] for stream in streams for i in ids if i in stream.ended]
    return len(ids) / (max(ended) - min(started))


async def main(runs: int, latency_runs: int) -> None:
    async with local_mesh(with_worker=False) as mesh:
        producer = make_producer(mesh.settings.kafka, client_id="bench-direct")
        await producer.start()
        topic = Topics(mesh.settings.topic_prefix).requests("test")
        free, limited = f"bench-{uuid.uuid4().hex[:6]}", f"bench-lim-{uuid.uuid4().hex[:6]}"
        await set_limit(mesh.pool, limited, "*", max_running=100_000, max_queued=None)
        try:
            async with (
                tenant(mesh.url, mesh.pool, free, connections=CONCURRENCY) as (http, stream),
                tenant(mesh.url, mesh.pool, limited, connections=CONCURRENCY) as (
                    limited_http,
                    limited_stream,
                ),
            ):
                streams = [stream, limited_stream]

                async def until_ended(ids: list[str]) -> None:
                    await stream.until(lambda: all(i in stream.ended for i in ids[::2]))
                    await limited_stream.until(
                        lambda: all(i in limited_stream.ended for i in ids[1::2])
                    )

                async def produce(count: int) -> list[str]:
                    requests = [
                        RunRequest(category="test", action="noop", tenant=[free, limited][i % 2])
                        for i in range(count)
                    ]

                    async def one(index: int) -> None:
                        request = requests[index]
                        await producer.send_and_wait(
                            topic, encode(request), key=str(request.run_id).encode()
                        )

                    await in_parallel(count, one)
                    return [str(request.run_id) for request in requests]

                async def submit(count: int) -> list[str]:
                    ids = [str(uuid.uuid4()) for _ in range(count)]

                    async def one(index: int) -> None:
                        client = limited_http if index % 2 else http
                        body = {
                            "category": "test",
                            "action": "noop",
                            "run_id": ids[index],
                            "priority": 1 + index % 9,
                        }
                        (await client.post("/v1/runs", json=body)).raise_for_status()

                    await in_parallel(count, one)
                    return ids

                async with mesh_worker(mesh.settings):  # announces the test kit

                    async def known() -> bool:
                        return (await http.get("/v1/plugins/testkit")).status_code == 200

                    await eventually(known, timeout=60, message="testkit never announced")
                    await until_ended(await submit(WARM_UP))
                    await until_ended(await produce(WARM_UP))

                # Each way: the runs wait (on the topic, or held in the gateway) while no
                # worker serves them; then one worker drains them.
                direct_ids = await produce(runs)
                async with mesh_worker(mesh.settings):
                    await until_ended(direct_ids)
                baseline = drain_rate(streams, direct_ids)

                began = time.perf_counter()
                scheduled_ids = await submit(runs)
                submit_rate = runs / (time.perf_counter() - began)
                async with mesh_worker(mesh.settings) as worker:
                    await until_ended(scheduled_ids)
                    value = drain_rate(streams, scheduled_ids)
                    log(
                        f"drain: scheduled {value:.0f} runs/s, direct {baseline:.0f} runs/s "
                        f"({runs} runs, {worker.settings.max_concurrent_runs} slots); REST "
                        f"submissions {submit_rate:.0f}/s"
                    )

                    waits = []
                    for _ in range(latency_runs):
                        run_id = str(uuid.uuid4())
                        body = {"category": "test", "action": "noop", "run_id": run_id}
                        (await http.post("/v1/runs", json=body)).raise_for_status()
                        queued = time.perf_counter()
                        await stream.ended_at(run_id)
                        waits.append((stream.started[run_id] - queued) * 1000)
        finally:
            await producer.stop()
    ordered = sorted(waits)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    log(f"queued → started with a free slot: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(
        json.dumps(
            {
                "bench": "dispatch_latency",
                "value": round(value, 1),
                "unit": "runs/s",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "runs": runs,
                "rest_submissions_per_s": round(submit_rate, 1),
                "queued_to_started_p50_ms": round(p50, 1),
                "queued_to_started_p99_ms": round(p99, 1),
                "target_ratio": 0.8,
                "target_p99_ms": 100,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per way")
    parser.add_argument("--latency-runs", type=int, default=200, help="single runs timed")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.latency_runs))
