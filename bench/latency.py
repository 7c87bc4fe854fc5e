"""The no-op run's latency: REST submission → its terminal event on the tenant's SSE stream.

An in-process gateway and worker on the embedded sandbox run the test kit's `noop` action (in
the worker's process, so what is measured is the platform, not a fork). Three ways, each run
waited for before the next, interleaved so they share the machine's state:
- rest: `POST /v1/runs`, until `run.succeeded` arrives on `GET /v1/events` of the tenant;
- limited: the same for a tenant with a limit set (`max_running` far above what it uses), so
  each submission also reads the tenant's limits and usage under its advisory lock;
- direct (baseline): a `RunRequest` produced straight to the requests topic with aiokafka,
  until its `run.succeeded` arrives on the same kind of stream.
Value = rest p50 in ms, baseline = direct p50, ratio = value / baseline: what the gateway's
path (validation, outbox, relay) adds over a Kafka producer's. Aims (issue 20): p50 < 50 ms,
p99 < 150 ms. `--runs N` sets the runs per way (default 200).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

import httpx
from support.mesh import local_mesh
from support.tenants import Stream, tenant

from runmesh.core.events import RunRequest, encode
from runmesh.core.kafka import make_producer
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.tenant_limits import set_limit

WARM_UP = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


Tenant = tuple[httpx.AsyncClient, Stream]


async def rest_once(http: httpx.AsyncClient, stream: Stream) -> float:
    run_id = str(uuid.uuid4())
    began = time.perf_counter()
    response = await http.post(
        "/v1/runs", json={"category": "test", "action": "noop", "run_id": run_id}
    )
    response.raise_for_status()
    return (await stream.ended_at(run_id)) - began


async def main(runs: int) -> None:
    times: dict[str, list[float]] = {"rest": [], "limited": [], "direct": []}
    async with local_mesh() as mesh:
        producer = make_producer(mesh.settings.kafka, client_id="bench-direct")
        await producer.start()
        topic = Topics(mesh.settings.topic_prefix).requests("test")
        free, limited = f"bench-{uuid.uuid4().hex[:6]}", f"bench-lim-{uuid.uuid4().hex[:6]}"
        await set_limit(mesh.pool, limited, "*", max_running=10_000, max_queued=None)
        try:
            async with (
                tenant(mesh.url, mesh.pool, free) as (http, stream),
                tenant(mesh.url, mesh.pool, limited) as (limited_http, limited_stream),
            ):

                async def known() -> bool:
                    return (await http.get("/v1/plugins/testkit")).status_code == 200

                await eventually(known, timeout=60, message="testkit never announced")

                async def direct_once() -> float:
                    request = RunRequest(category="test", action="noop", tenant=free)
                    began = time.perf_counter()
                    await producer.send_and_wait(
                        topic, encode(request), key=str(request.run_id).encode()
                    )
                    return (await stream.ended_at(str(request.run_id))) - began

                for index in range(WARM_UP + runs):
                    rest = await rest_once(http, stream)
                    lim = await rest_once(limited_http, limited_stream)
                    direct = await direct_once()
                    if index >= WARM_UP:
                        times["rest"].append(rest * 1000)
                        times["limited"].append(lim * 1000)
                        times["direct"].append(direct * 1000)
        finally:
            await producer.stop()
    stats = {way: _percentiles(values) for way, values in times.items()}
    for way, (p50, p99) in stats.items():
        log(f"{way}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({runs} runs)")
    value, baseline = stats["rest"][0], stats["direct"][0]
    print(
        json.dumps(
            {
                "bench": "latency",
                "value": round(value, 1),
                "unit": "ms",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "runs": runs,
                "rest_p99_ms": round(stats["rest"][1], 1),
                "limited_p50_ms": round(stats["limited"][0], 1),
                "limited_p99_ms": round(stats["limited"][1], 1),
                "direct_p99_ms": round(stats["direct"][1], 1),
                "target_p50_ms": 50,
                "target_p99_ms": 150,
            }
        )
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per way")
    asyncio.run(main(parser.parse_args().runs))
