"""Honest queues (issue 17 item 5): workers announce themselves on `runmesh.workers`, the gateway
lists the live ones, and a queued run says why it waits — over REST and over its SSE stream —
until a worker takes it. Real Tansu, PostgreSQL and workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from runmesh.cli.__main__ import main
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

DEADLINE_S = 90.0  # catches a hang; the announcements come every 0.3 s


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """Quick announcements, so a worker is counted gone soon after it stops; a database of
    the test's own, so the queue holds only its runs and the workers table only its workers."""
    quick = settings.model_copy(update={"worker_heartbeat_s": 0.3, "sse_heartbeat_s": 0.5})
    async with own_database(quick) as own:
        yield own


@pytest.fixture
async def api(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(gateway, f"presence-{uuid.uuid4().hex[:8]}") as http:
        yield http


async def workers(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await api.get("/v1/workers", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def none_listed(api: httpx.AsyncClient, **params: str) -> bool:
    return await workers(api, **params) == []


async def submit(api: httpx.AsyncClient, action: str, params: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(
        "/v1/runs", json={"category": CATEGORY, "action": action, "params": params}
    )
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def get_run(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_a_worker_is_listed_with_its_pool_and_labels_while_it_serves(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with worker(worker_pool="gpu-a", worker_labels=["cuda12", "gpu"]) as running:
        [listed] = await eventually(
            lambda: workers(api, category=CATEGORY), timeout=DEADLINE_S, message="not listed"
        )
        assert listed["worker"] == running.worker_id
        assert (listed["pool"], listed["labels"], listed["state"]) == (
            "gpu-a",
            ["cuda12", "gpu"],
            "serving",
        )
        assert (listed["slots"], listed["busy"]) == (running.settings.max_concurrent_runs, 0)
        assert await workers(api, pool="gpu-a") == [listed]
        assert await workers(api, pool="cpu") == []
        root = ["--gateway-url", gateway.url, "--token", await gateway.token()]
        capsys.readouterr()
        assert await asyncio.to_thread(main, [*root, "workers", "--category", CATEGORY]) == 0
        table = capsys.readouterr().out
        assert "gpu-a" in table and "cuda12,gpu" in table and "serving" in table, table
        assert await asyncio.to_thread(main, [*root, "workers", "--pool", "cpu"]) == 0
        assert capsys.readouterr().out == "no live worker of pool cpu\n"
    # It said `stopped` as it left: gone at once, not three heartbeats later.
    assert await eventually(
        lambda: none_listed(api, category=CATEGORY), timeout=DEADLINE_S, message="still listed"
    )


async def test_a_queued_run_says_why_it_waits_until_a_worker_takes_it(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with worker():  # announces the test plugin, so the gateway takes runs of it
        await until_plugin_known(api)
    await eventually(lambda: none_listed(api), timeout=DEADLINE_S, message="still listed")

    first = await submit(api, "echo", {"name": "a", "count": 1})
    second = await submit(api, "echo", {"name": "b", "count": 1})
    assert first["queue"]["reason"].startswith(f"no worker serves category {CATEGORY}")
    assert (first["queue"]["position"], second["queue"]["position"]) == (1, 2)
    assert first["queue"]["workers"] == 0
    listed = (await api.get("/v1/runs", params={"state": "queued"})).json()["items"]
    assert {run["id"]: run["queue"]["position"] for run in listed} == {
        first["id"]: 1,
        second["id"]: 2,
    }
    root = ["--gateway-url", gateway.url, "--token", api.headers["Authorization"][7:]]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*root, "runs", "ls", "--state", "queued"]) == 0
    table = capsys.readouterr().out
    assert "queued #1" in table and "queued #2" in table, table

    messages: list[tuple[str | None, Any]] = []
    first_queue_message = asyncio.Event()

    async def follow() -> None:
        path = f"/v1/runs/{first['id']}/events"
        async with api.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
            event: str | None = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    messages.append((event, orjson.loads(line.removeprefix("data:"))))
                    if event == "run.queue":
                        first_queue_message.set()

    stream = asyncio.create_task(follow())
    async with asyncio.timeout(DEADLINE_S):
        await first_queue_message.wait()
    # The CLI's `runs watch` of the second run says the same, then follows it to its end.
    capsys.readouterr()
    watching = asyncio.create_task(asyncio.to_thread(main, [*root, "runs", "watch", second["id"]]))
    printed: list[str] = []

    def watch_said_queued() -> bool:
        printed.append(capsys.readouterr().out)
        return f"queued: no worker serves category {CATEGORY}" in "".join(printed)

    await eventually(watch_said_queued, timeout=DEADLINE_S, message="runs watch said nothing")
    event, data = messages[0]
    assert event == "run.queue"
    assert data["run_id"] == first["id"]
    assert data["reason"].startswith(f"no worker serves category {CATEGORY}")

    async with worker():
        async with asyncio.timeout(DEADLINE_S):
            await stream  # the stream ends after the run's terminal event
            assert await watching == 0  # the second run succeeded too
    types = [event for event, _ in messages]
    assert types[0] == "run.queue"
    assert "run.started" in types
    assert types[-1] == "run.succeeded"
    assert all(event == "run.queue" for event in types[: types.index("run.started")])
    done = await get_run(api, first["id"])
    assert (done["state"], done["queue"]) == ("succeeded", None)


async def test_a_run_behind_busy_slots_says_its_position(
    gateway: GatewayHandle, api: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker(max_concurrent_runs=1):
        await eventually(lambda: workers(api, category=CATEGORY), timeout=DEADLINE_S)
        await until_plugin_known(api)
        holding = await submit(api, "sleep", {"seconds": 600, "steps": 6000})

        async def busy() -> bool:
            [listed] = await workers(api, category=CATEGORY)
            return bool(listed["busy"] == 1)

        await eventually(busy, timeout=DEADLINE_S, message="the worker never said it was busy")
        waiting = await submit(api, "echo", {"name": "c", "count": 1})
        # Position 1 of its own category's queue: the running one is no longer queued.
        assert waiting["queue"]["reason"] == (
            f"position 1 in the {CATEGORY} queue: 1 of 1 slots busy on 1 worker"
        )
        assert (waiting["queue"]["slots"], waiting["queue"]["busy"]) == (1, 1)
        assert waiting["queue"]["pools"] == ["default"]
        cancelled = await api.post(f"/v1/runs/{holding['id']}/cancel", json={})
        assert cancelled.status_code == 202, cancelled.text

        async def succeeded() -> bool:
            return (await get_run(api, waiting["id"]))["state"] == "succeeded"

        await eventually(succeeded, timeout=DEADLINE_S, message="the queued run never ran")


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--pool", "GPU pool"], "--pool 'GPU pool' is not of the form"),
        (["--labels", "gpu,Bad Label"], "--labels: labels ['Bad', 'Label'] are not of the form"),
    ],
)
def test_a_worker_refuses_a_malformed_pool_or_label(
    option: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", CATEGORY, *option]) == 1
    assert said in capsys.readouterr().err
