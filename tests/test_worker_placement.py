"""Pools and labels (issue 17 item 2): a run that needs a label waits, saying so, until a worker
that has it joins, then starts there; pools are taken in order of preference; a worker never
runs what it lacks the labels for. Real Tansu, PostgreSQL and workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runmesh.cli.__main__ import main
from runmesh.core.events import FailedPayload
from runmesh.core.run_policy import Placement
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually

from .conftest import (
    CATEGORY,
    GatewayHandle,
    RunClient,
    WorkerFactory,
    own_database,
    tenant_client,
    until_plugin_known,
)

DEADLINE_S = 90.0  # catches a hang; workers announce themselves every 0.3 s


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """Quick announcements, and a database of the test's own: its workers are all there is."""
    async with own_database(settings.model_copy(update={"worker_heartbeat_s": 0.3})) as own:
        yield own


@pytest.fixture
async def api(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(gateway, f"placement-{uuid.uuid4().hex[:8]}") as http:
        yield http


async def listed_pools(api: httpx.AsyncClient) -> list[str]:
    response = await api.get("/v1/workers", params={"category": CATEGORY})
    assert response.status_code == 200, response.text
    return sorted(worker["pool"] for worker in response.json()["items"])


async def until_pools(api: httpx.AsyncClient, pools: list[str]) -> None:
    async def listed() -> bool:
        return await listed_pools(api) == pools

    await eventually(listed, timeout=DEADLINE_S, message=f"live pools never {pools}")


async def submit(api: httpx.AsyncClient, placement: dict[str, Any]) -> dict[str, Any]:
    body = {
        "category": CATEGORY,
        "action": "echo",
        "params": {"name": "placed", "count": 1},
        "placement": placement,
    }
    response = await api.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def until_succeeded(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
        assert run["state"] in {"queued", "running", "succeeded"}, run
        return run if run["state"] == "succeeded" else None

    found: dict[str, Any] = await eventually(
        ended, timeout=DEADLINE_S, message=f"run {run_id} never succeeded"
    )
    return found


async def worker_of(api: httpx.AsyncClient, run_id: str) -> str:
    response = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    [started] = [event for event in response.json() if event["type"] == "run.started"]
    return str(started["worker"])


async def test_a_run_needing_a_label_waits_until_a_worker_with_it_joins(
    gateway: GatewayHandle, api: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker():  # the default pool, no labels
        await until_pools(api, ["default"])
        await until_plugin_known(api)
        held = await submit(api, {"labels": ["gpu"]})
        assert (held["state"], held["pool"]) == ("queued", None)
        assert held["placement"] == {"pools": [], "labels": ["gpu"]}
        assert held["queue"]["reason"] == (
            f"waiting for a worker of {CATEGORY} with labels gpu (none is live)"
        )
        assert held["queue"]["pool"] is None
        # A run without placement still goes to the default pool.
        plain = await submit(api, {})
        assert (await until_succeeded(api, plain["id"]))["pool"] == "default"

        async with worker(worker_pool="gpu", worker_labels=["gpu"]) as gpu:
            done = await until_succeeded(api, held["id"])
            assert done["pool"] == "gpu"
            assert await worker_of(api, held["id"]) == gpu.worker_id
            # Live now: the next such run goes straight to its pool.
            direct = await submit(api, {"labels": ["gpu"]})
            assert (await until_succeeded(api, direct["id"]))["pool"] == "gpu"


async def test_pools_are_taken_in_order_of_preference(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    placement = {"pools": ["big", "small"]}
    async with worker(worker_pool="small") as small:
        async with worker(worker_pool="big") as big:
            await until_pools(api, ["big", "small"])
            await until_plugin_known(api)
            first = await submit(api, placement)
            assert (await until_succeeded(api, first["id"]))["pool"] == "big"
            assert await worker_of(api, first["id"]) == big.worker_id
            # The CLI's way: `--pool` repeated, in order of preference.
            root = ["--gateway-url", gateway.url, "--token", api.headers["Authorization"][7:]]
            params = '{"name": "cli", "count": 1}'
            argv = ["submit", CATEGORY, "echo", "-p", params, "--pool", "big", "--pool", "small"]
            capsys.readouterr()
            assert await asyncio.to_thread(main, [*root, *argv, "--wait"]) == 0
            run_id = capsys.readouterr().out.split()[1]
            assert (await api.get(f"/v1/runs/{run_id}")).json()["pool"] == "big"
        await until_pools(api, ["small"])  # big said `stopped` as it left
        second = await submit(api, placement)
        assert (await until_succeeded(api, second["id"]))["pool"] == "small"
        assert await worker_of(api, second["id"]) == small.worker_id


async def test_a_worker_fails_a_run_whose_labels_it_lacks(
    worker: WorkerFactory, client: RunClient
) -> None:
    # Produced straight to the default pool's topic: no gateway chose a pool for it.
    async with worker(worker_labels=["cpu"]):
        request = await client.submit(
            "echo", {"name": "x", "count": 1}, placement=Placement(labels=["gpu"])
        )
        end = await client.wait_terminal(request.run_id, timeout=DEADLINE_S)
    assert end.type == "run.failed"
    assert isinstance(end.payload, FailedPayload)
    assert end.payload.error_type == "PlacementMismatch"
    assert "needs labels ['gpu']" in end.payload.message
