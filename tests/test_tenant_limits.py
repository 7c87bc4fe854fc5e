"""Tenant limits (issue 17 item 4): a tenant never has more runs under way than its limit (the
rest wait queued, saying why, and start as its runs end), and a submission over its queue cap
is a 429 with Retry-After. Set with the operator's CLI; real Tansu, PostgreSQL and workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

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

DEADLINE_S = 120.0  # catches a hang


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of the test's own; quick worker announcements."""
    async with own_database(settings.model_copy(update={"worker_heartbeat_s": 0.3})) as own:
        yield own


@pytest.fixture
def tenant() -> str:
    return f"limited-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(gateway, tenant) as http:
        yield http


@pytest.fixture
def operator(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment: the operator's database (limits are set there)."""
    assert settings.database_url
    monkeypatch.setenv("RUNMESH_DATABASE_URL", settings.database_url)
    return settings


async def limits_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, ["limits", *argv])


async def submit(api: httpx.AsyncClient, action: str, params: dict[str, Any]) -> httpx.Response:
    return await api.post(
        "/v1/runs", json={"category": CATEGORY, "action": action, "params": params}
    )


async def test_a_tenant_never_has_more_runs_under_way_than_its_limit(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    operator: Settings,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await limits_cli("set", tenant, "--max-running", "2") == 0
    assert f"tenant {tenant}, all categories: at most 2 under way" in capsys.readouterr().out
    async with worker():  # 8 slots: only the limit holds runs back
        await until_plugin_known(api)
        submitted = []
        for _ in range(6):
            response = await submit(api, "sleep", {"seconds": 0.6, "steps": 3})
            assert response.status_code == 202, response.text
            submitted.append(response.json()["id"])
        peak = 0
        reasons: set[str] = set()

        async def all_succeeded() -> bool:
            nonlocal peak
            listed = (await api.get("/v1/runs", params={"limit": 50})).json()["items"]
            running = [run for run in listed if run["state"] == "running"]
            peak = max(peak, len(running))
            assert len(running) <= 2, [run["id"] for run in running]
            reasons.update(run["queue"]["reason"] for run in listed if run["queue"])
            return sum(run["state"] == "succeeded" for run in listed) == len(submitted)

        await eventually(
            all_succeeded, timeout=DEADLINE_S, interval=0.1, message="runs never all ended"
        )
    assert peak == 2, "the limit let fewer runs run than it allows"
    assert "tenant limit: 2 of 2 runs under way" in reasons, reasons
    limits = (await api.get("/v1/limits")).json()["items"]
    assert limits == [
        {"category": "*", "max_running": 2, "max_queued": None, "running": 0, "queued": 0}
    ]


async def test_over_its_queue_cap_a_submission_is_refused_with_429(
    gateway: GatewayHandle,
    api: httpx.AsyncClient,
    worker: WorkerFactory,
    operator: Settings,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with worker():  # announces the test plugin; then no worker takes the runs
        await until_plugin_known(api)
    args = ["set", tenant, "--category", CATEGORY, "--max-queued", "2"]
    assert await limits_cli(*args) == 0
    body = {"category": CATEGORY, "action": "echo", "params": {"name": "q", "count": 1}}
    first = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "first"})
    assert first.status_code == 202, first.text
    response = await submit(api, "echo", {"name": "q", "count": 1})
    assert response.status_code == 202, response.text
    # At the cap, the same submission again (a client's retry) still answers its run.
    again = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "first"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    refused = await submit(api, "echo", {"name": "q", "count": 1})
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == (
        f"tenant {tenant} has 2 runs of {CATEGORY} queued, its limit (2); "
        "submit again once some have started"
    )
    capsys.readouterr()
    assert await limits_cli("ls", tenant) == 0
    assert CATEGORY in capsys.readouterr().out
    assert await limits_cli("rm", tenant, "--category", CATEGORY) == 0
    accepted = await submit(api, "echo", {"name": "q", "count": 1})
    assert accepted.status_code == 202, accepted.text
    assert await limits_cli("rm", tenant, "--category", CATEGORY) == 1  # gone already
