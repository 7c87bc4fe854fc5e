"""What a pipeline costs over the glue script a user would otherwise write.

A chain of 5 no-op steps (the test kit's `noop`, run in the worker's process) through an
in-process gateway and worker, on the embedded sandbox:
- pipeline: `POST /v1/pipelines`, then the time until its run ended (read every 10 ms);
- baseline, measured in the same run and interleaved with it: the same 5 runs submitted back
  to back with `POST /v1/runs`, each waited for (read every 10 ms) before the next.
Value = median pipeline seconds, baseline = median glue seconds, ratio = value / baseline
(aim: <= 1.05). Also printed: the scheduling gap p50 and p99, a step's run `finished_at` to the
next step's `started_at` (both stamped from the worker's events), in ms (aim: p50 < 50); and
the cancel cascade: `POST /v1/runs/{id}/cancel` on a pipeline with two running steps and a
pending one, until every step is terminal (aim: within 2 s), beside the cancel of one running
run alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
from support.mesh import local_mesh  # bench/support, on the script's path

from runmesh.core.testing import eventually
from runmesh.gateway.tokens import create_token

STEPS = 5
ROUNDS = 10
CANCEL_ROUNDS = 5
POLL_S = 0.01


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _ended(http: httpx.AsyncClient, path: str, state_of: Any) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(path)).json()
        return body if state_of(body) in ("succeeded", "failed", "cancelled") else None

    found = await eventually(done, timeout=120, interval=POLL_S, message=path)
    assert isinstance(found, dict)  # eventually returns only a truthy value
    return found


async def pipeline_once(http: httpx.AsyncClient) -> tuple[float, list[float]]:
    """Seconds from submission to the pipeline's end, and its steps' scheduling gaps."""
    steps = {
        f"s{i}": {
            "category": "test",
            "action": "noop",
            "needs": [f"s{i - 1}"] if i else [],
        }
        for i in range(STEPS)
    }
    began = time.perf_counter()
    response = await http.post(
        "/v1/pipelines", json={"pipeline": {"name": "chain", "steps": steps}}
    )
    response.raise_for_status()
    run_id = response.json()["run"]["id"]
    pipeline = await _ended(http, f"/v1/pipelines/{run_id}", lambda body: body["run"]["state"])
    seconds = time.perf_counter() - began
    assert pipeline["run"]["state"] == "succeeded", pipeline
    runs = [(await http.get(f"/v1/runs/{step['run_id']}")).json() for step in pipeline["steps"]]
    gaps = [
        (_ts(after["started_at"]) - _ts(before["finished_at"])) * 1000
        for before, after in itertools.pairwise(runs)
    ]
    return seconds, gaps


async def glue_once(http: httpx.AsyncClient) -> float:
    """Seconds for the same chain submitted run by run, each waited for."""
    began = time.perf_counter()
    for _ in range(STEPS):
        response = await http.post("/v1/runs", json={"category": "test", "action": "noop"})
        response.raise_for_status()
        run = await _ended(http, f"/v1/runs/{response.json()['id']}", lambda body: body["state"])
        assert run["state"] == "succeeded", run
    return time.perf_counter() - began


SLEEP = {"category": "test", "action": "sleep", "params": {"seconds": 60, "steps": 600}}


async def _running(http: httpx.AsyncClient, run_id: str) -> None:
    async def started() -> bool:
        return bool((await http.get(f"/v1/runs/{run_id}")).json()["state"] == "running")

    await eventually(started, timeout=60, interval=POLL_S, message=f"{run_id} never ran")


async def cancel_pipeline_once(http: httpx.AsyncClient) -> float:
    """Seconds from cancelling a pipeline (two steps running, one pending) until every step
    of it is terminal."""
    steps = {"a": SLEEP, "b": SLEEP, "c": {**SLEEP, "needs": ["a", "b"]}}
    response = await http.post("/v1/pipelines", json={"pipeline": {"name": "hold", "steps": steps}})
    response.raise_for_status()
    started = response.json()
    for step in started["steps"][:2]:
        await _running(http, step["run_id"])
    began = time.perf_counter()
    (await http.post(f"/v1/runs/{started['run']['id']}/cancel")).raise_for_status()
    for step in started["steps"][:2]:
        await _ended(http, f"/v1/runs/{step['run_id']}", lambda body: body["state"])
    pipeline = await _ended(
        http, f"/v1/pipelines/{started['run']['id']}", lambda body: body["run"]["state"]
    )
    seconds = time.perf_counter() - began
    assert {step["state"] for step in pipeline["steps"]} == {"cancelled"}, pipeline
    return seconds


async def cancel_run_once(http: httpx.AsyncClient) -> float:
    """Seconds from cancelling one running run until it is terminal."""
    response = await http.post("/v1/runs", json=SLEEP)
    response.raise_for_status()
    run_id = response.json()["id"]
    await _running(http, run_id)
    began = time.perf_counter()
    (await http.post(f"/v1/runs/{run_id}/cancel")).raise_for_status()
    await _ended(http, f"/v1/runs/{run_id}", lambda body: body["state"])
    return time.perf_counter() - began


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def main() -> None:
    async with local_mesh() as mesh:
        token = await create_token(mesh.pool, f"bench-{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=mesh.url, headers=headers, timeout=60) as http:

            async def known() -> bool:
                plugins = (await http.get("/v1/plugins")).json()["items"]
                return any(plugin["code"] == "testkit" for plugin in plugins)

            await eventually(known, timeout=60, message="testkit never announced")
            await pipeline_once(http)  # warm-up: topics, consumer groups, connections
            await glue_once(http)
            piped, glued, gaps = [], [], []
            for _ in range(ROUNDS):
                seconds, round_gaps = await pipeline_once(http)
                piped.append(seconds)
                gaps.extend(round_gaps)
                glued.append(await glue_once(http))
            cancels, single_cancels = [], []
            for _ in range(CANCEL_ROUNDS):
                cancels.append(await cancel_pipeline_once(http))
                single_cancels.append(await cancel_run_once(http))
    value, baseline = statistics.median(piped), statistics.median(glued)
    gaps.sort()
    p50 = statistics.median(gaps)
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    cancel_s, single_cancel_s = statistics.median(cancels), statistics.median(single_cancels)
    log(f"pipeline {value:.3f} s, glue script {baseline:.3f} s, gap p50 {p50:.1f} ms p99 {p99:.1f}")
    log(
        f"cancel: every step terminal {cancel_s:.3f} s (max {max(cancels):.3f}), "
        f"one run {single_cancel_s:.3f} s"
    )
    result = {
        "bench": "pipeline_overhead",
        "value": round(value, 4),
        "unit": "s",
        "baseline": round(baseline, 4),
        "ratio": round(value / baseline, 3),
        "steps": STEPS,
        "rounds": ROUNDS,
        "gap_p50_ms": round(p50, 1),
        "gap_p99_ms": round(p99, 1),
        "target_ratio": 1.05,
        "target_gap_p50_ms": 50,
        "cancel_s": round(cancel_s, 3),
        "cancel_max_s": round(max(cancels), 3),
        "single_run_cancel_s": round(single_cancel_s, 3),
        "target_cancel_s": 2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
