"""Schedules (issue 17 item 7): a cron schedule fires once per tick with two gateway replicas,
keeps firing across a gateway's restart, skips a tick while its previous run runs, and is
refused when it cannot be read. Real Tansu, PostgreSQL and a worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
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

DEADLINE_S = 120.0  # catches a hang; the schedules tick every second or two
EVERY_2_S = "* * * * * */2"  # six fields: seconds last


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of the test's own: two gateways share it, and only this test's rows."""
    async with own_database(settings) as own:
        yield own


@pytest.fixture
def tenant() -> str:
    return f"sched-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(gateway, tenant) as http:
        yield http


async def create(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


async def until_fired(api: httpx.AsyncClient, schedule_id: str, count: int) -> dict[str, Any]:
    async def fired() -> dict[str, Any] | None:
        schedule: dict[str, Any] = (await api.get(f"/v1/schedules/{schedule_id}")).json()
        return schedule if schedule["fired"] >= count else None

    found: dict[str, Any] = await eventually(
        fired, timeout=DEADLINE_S, message=f"schedule never fired {count} times"
    )
    return found


async def keys_of(settings: Settings, tenant: str) -> list[str]:
    """The idempotency keys of the tenant's runs: one per tick fired."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key FROM runs.runs WHERE tenant = $1 ORDER BY created_at", tenant
        )
    finally:
        await conn.close()
    return [row["idempotency_key"] for row in rows]


async def test_a_schedule_fires_once_per_tick_with_two_gateways_and_across_a_restart(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    settings: Settings,
    tenant: str,
) -> None:
    other = GatewayHandle(settings)  # a second replica on the same database and topics
    await other.start()
    try:
        async with worker():
            await until_plugin_known(api)
            run = {"category": CATEGORY, "action": "echo", "params": {"name": "tick", "count": 1}}
            body = {"name": "every-2s", "cron": EVERY_2_S, "overlap": "queue", "run": run}
            schedule = await create(api, body)
            assert (schedule["fired"], schedule["paused"]) == (0, False)
            await until_fired(api, schedule["id"], 3)
            await gateway.stop()  # one replica restarts; the other keeps firing meanwhile
            before = (await tenant_get(other, tenant, schedule["id"]))["fired"]
            async with tenant_client(other, tenant) as replica:
                await until_fired(replica, schedule["id"], before + 2)
            await gateway.start()
            after = await until_fired(api, schedule["id"], before + 4)
            paused = (await api.post(f"/v1/schedules/{schedule['id']}/pause")).json()
            assert paused["paused"] is True
    finally:
        await other.stop()
    keys = await keys_of(settings, tenant)
    # Every tick made one run, whichever replica fired it: no key twice.
    assert len(keys) == len(set(keys)) >= after["fired"], keys
    assert all(key.startswith(f"schedule-{schedule['id']}-") for key in keys)
    resumed = (await api.post(f"/v1/schedules/{schedule['id']}/resume")).json()
    assert resumed["paused"] is False and resumed["next_at"] >= paused["next_at"]


async def tenant_get(gateway: GatewayHandle, tenant: str, schedule_id: str) -> dict[str, Any]:
    async with tenant_client(gateway, tenant) as http:
        schedule: dict[str, Any] = (await http.get(f"/v1/schedules/{schedule_id}")).json()
        return schedule


async def test_overlap_skip_skips_ticks_while_the_previous_run_runs(
    gateway: GatewayHandle, api: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker():
        await until_plugin_known(api)
        run = {"category": CATEGORY, "action": "sleep", "params": {"seconds": 600, "steps": 6000}}
        schedule = await create(
            api, {"name": "long", "cron": "* * * * * *", "overlap": "skip", "run": run}
        )

        async def skipped_twice() -> dict[str, Any] | None:
            found: dict[str, Any] = (await api.get(f"/v1/schedules/{schedule['id']}")).json()
            return found if found["skipped"] >= 2 else None

        found = await eventually(skipped_twice, timeout=DEADLINE_S, message="never skipped")
        assert found["fired"] == 1  # the one long run, still running
        cancelled = await api.post(f"/v1/runs/{found['last_run_id']}/cancel", json={})
        assert cancelled.status_code in (200, 202), cancelled.text
        assert (await api.delete(f"/v1/schedules/{schedule['id']}")).status_code == 204
        assert (await api.get(f"/v1/schedules/{schedule['id']}")).status_code == 404


async def test_a_schedule_that_cannot_be_read_is_refused(
    gateway: GatewayHandle, api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    run = {"category": CATEGORY, "action": "echo"}
    bad = [
        ({"name": "a", "cron": "every day", "run": run}, "cron"),
        ({"name": "a", "cron": "0 3 * * *", "timezone": "Mars/Olympus", "run": run}, "timezone"),
        ({"name": "a", "cron": "0 0 31 2 *", "run": run}, "never fires"),
        ({"name": "a", "cron": "0 3 * * *"}, "exactly one of"),
        ({"name": "a", "cron": "0 3 * * *", "run": {**run, "run_id": str(uuid.uuid4())}}, "run_id"),
    ]
    for body, said in bad:
        response = await api.post("/v1/schedules", json=body)
        assert response.status_code == 422, response.text
        assert said in response.text, response.text
    good = {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "run": run}
    created = await create(api, good)
    assert created["next_at"].endswith(("T02:00:00Z", "T01:00:00Z"))  # 03:00 in Berlin
    again = await api.post("/v1/schedules", json=good)
    assert again.status_code == 409, again.text
    root = ["--gateway-url", gateway.url, "--token", api.headers["Authorization"][7:]]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*root, "schedules", "ls"]) == 0
    assert "nightly" in capsys.readouterr().out
