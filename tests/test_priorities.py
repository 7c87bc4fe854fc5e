"""Priorities, fair shares and resources (issue 17 items 2 and 3): with one slot, a tenant's
backlog cannot starve another tenant, a higher priority starts first, a `lock_all` run never
shares its worker, and a run asking for GPUs waits for a worker offering them and never
shares one GPU. Real Tansu, PostgreSQL and workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from runmesh.core.settings import Settings
from runmesh.core.testing import eventually

from .conftest import (
    CATEGORY,
    GatewayHandle,
    WorkerFactory,
    own_database,
    tenant_client,
    until_plugin_known,
)

DEADLINE_S = 180.0  # catches a hang


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of the test's own (it counts every run's share); quick announcements."""
    async with own_database(settings.model_copy(update={"worker_heartbeat_s": 0.3})) as own:
        yield own


async def submit(api: httpx.AsyncClient, action: str, params: dict[str, Any], **extra: Any) -> str:
    body = {"category": CATEGORY, "action": action, "params": params, **extra}
    response = await api.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def run_of(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
    return found


async def until_running(api: httpx.AsyncClient, run_id: str) -> None:
    async def running() -> bool:
        return (await run_of(api, run_id))["state"] == "running"

    await eventually(running, timeout=DEADLINE_S, message=f"run {run_id} never started")


async def start_order(apis: list[httpx.AsyncClient], run_ids: list[str], count: int) -> list[str]:
    """The first `count` of `run_ids` to start, in the order they started (one slot: one at a
    time), once that many have."""
    started: dict[str, datetime] = {}

    async def enough() -> bool:
        for api in apis:
            query = {"state": ["running", "succeeded"], "limit": 200}
            listed = (await api.get("/v1/runs", params=query)).json()["items"]
            for run in listed:
                if run["id"] in run_ids and run["started_at"]:
                    started[run["id"]] = datetime.fromisoformat(run["started_at"])
        return len(started) >= count

    await eventually(enough, timeout=DEADLINE_S, interval=0.2, message="runs never started")
    return sorted(started, key=started.__getitem__)[:count]


async def test_one_tenants_backlog_does_not_starve_another(
    gateway: GatewayHandle, worker: WorkerFactory
) -> None:
    async with (
        tenant_client(gateway, f"a-{uuid.uuid4().hex[:6]}") as a,
        tenant_client(gateway, f"b-{uuid.uuid4().hex[:6]}") as b,
        worker(max_concurrent_runs=1),
    ):
        await until_plugin_known(a)
        # The one slot is busy while both backlogs are submitted.
        blocker = await submit(a, "sleep", {"seconds": 600, "steps": 600})
        await until_running(a, blocker)
        # Runs of 0.3 s: the window stays at 2 per slot (RUNMESH_ADMISSION_AHEAD_S, 0.5 s,
        # would widen it for shorter ones).
        nap = {"seconds": 0.3, "steps": 1}
        a_runs = [await submit(a, "sleep", nap) for _ in range(200)]
        b_runs = [await submit(b, "sleep", nap) for _ in range(10)]
        queued = (await run_of(b, b_runs[-1]))["queue"]
        assert queued["position"] > 1, queued
        assert (await a.post(f"/v1/runs/{blocker}/cancel")).status_code == 202
        first = await start_order([a, b], a_runs + b_runs, 20)
        assert set(b_runs) <= set(first), (
            f"only {len(set(b_runs) & set(first))} of B's 10 runs among the first 20 to start"
        )


async def test_a_higher_priority_starts_first(
    gateway: GatewayHandle, worker: WorkerFactory
) -> None:
    async with (
        tenant_client(gateway, f"p-{uuid.uuid4().hex[:6]}") as api,
        worker(max_concurrent_runs=1),
    ):
        await until_plugin_known(api)
        blocker = await submit(api, "sleep", {"seconds": 600, "steps": 600})
        await until_running(api, blocker)
        nap = {"seconds": 0.3, "steps": 1}
        low = [await submit(api, "sleep", nap, priority=2) for _ in range(6)]
        high = [await submit(api, "sleep", nap, priority=9) for _ in range(3)]
        shown = await run_of(api, high[0])
        assert shown["priority"] == 9
        refused = await api.post(
            "/v1/runs",
            json={"category": CATEGORY, "action": "sleep", "params": nap, "priority": 10},
        )
        assert refused.status_code == 422, refused.text
        assert (await api.post(f"/v1/runs/{blocker}/cancel")).status_code == 202
        order = await start_order([api], low + high, len(low) + len(high))
        # The pool's window (2 per slot) had taken the blocker and the first low run before
        # the high ones came; every later low run starts after all of them.
        assert order[0] == low[0], order
        assert set(order[1:4]) == set(high), order


async def test_a_lock_all_run_never_shares_its_worker(
    gateway: GatewayHandle, worker: WorkerFactory
) -> None:
    async with (
        tenant_client(gateway, f"x-{uuid.uuid4().hex[:6]}") as api,
        worker(max_concurrent_runs=4) as only,
    ):
        await until_plugin_known(api)
        nap = {"seconds": 0.6, "steps": 3}
        before = [await submit(api, "sleep", nap) for _ in range(3)]
        alone = await submit(api, "sleep", nap, resources={"lock_all": True})
        after = [await submit(api, "sleep", nap) for _ in range(3)]

        async def all_succeeded() -> bool:
            states = [(await run_of(api, run_id))["state"] for run_id in [*before, alone, *after]]
            assert "failed" not in states, states
            return all(state == "succeeded" for state in states)

        await eventually(all_succeeded, timeout=DEADLINE_S, message="runs never all ended")
        spans = {run_id: await executed(api, run_id) for run_id in [*before, alone, *after]}
        start, end = spans.pop(alone)
        for other, (other_start, other_end) in spans.items():
            assert other_end < start or end < other_start, (
                f"run {other} ran {other_start}..{other_end}, beside the lock_all run's "
                f"{start}..{end} on worker {only.worker_id}"
            )


async def executed(api: httpx.AsyncClient, run_id: str) -> tuple[datetime, datetime]:
    """When the run's action ran on its worker: from `run.started` to its last progress (the
    action's own last step)."""
    response = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    events = response.json()
    started = next(e["ts"] for e in events if e["type"] == "run.started")
    last = [e["ts"] for e in events if e["type"] == "run.progress"][-1]
    return datetime.fromisoformat(started), datetime.fromisoformat(last)


async def test_a_run_asking_for_gpus_waits_for_a_worker_offering_them(
    gateway: GatewayHandle, worker: WorkerFactory
) -> None:
    async with (
        tenant_client(gateway, f"g-{uuid.uuid4().hex[:6]}") as api,
        worker(max_concurrent_runs=4),  # no GPU
    ):
        await until_plugin_known(api)
        nap = {"seconds": 0.6, "steps": 3}
        gpu = {"resources": {"gpus": 1}}
        waiting = await submit(api, "sleep", nap, **gpu)

        async def says_why() -> bool:
            queue = (await run_of(api, waiting))["queue"]
            return bool(queue) and queue["reason"] == (
                f"waiting for a worker of {CATEGORY} offering 1 GPU (none is live)"
            )

        await eventually(says_why, timeout=DEADLINE_S, message="no reason given")
        async with worker(max_concurrent_runs=4, worker_pool="gpu", worker_gpus=1) as gpus:
            second = await submit(api, "sleep", nap, **gpu)

            async def both_succeeded() -> bool:
                states = {(await run_of(api, run_id))["state"] for run_id in (waiting, second)}
                assert "failed" not in states, states
                return states == {"succeeded"}

            await eventually(both_succeeded, timeout=DEADLINE_S, message="never ran")
            workers = (await api.get("/v1/workers", params={"pool": "gpu"})).json()["items"]
            assert [(w["worker"], w["gpus"]) for w in workers] == [(gpus.worker_id, 1)]
        # Four slots but one GPU: the two never ran at once.
        (start_a, end_a), (start_b, end_b) = [
            await executed(api, run_id) for run_id in (waiting, second)
        ]
        assert end_a < start_b or end_b < start_a, (start_a, end_a, start_b, end_b)
        assert {(await run_of(api, run_id))["pool"] for run_id in (waiting, second)} == {"gpu"}
