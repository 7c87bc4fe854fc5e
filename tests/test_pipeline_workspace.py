"""A pipeline's workspace over real HTTP, broker, PostgreSQL and S3: a folder of the platform
bucket every step of one pipeline run reads and writes, shared with the run that resumes it,
and deleted by the gateway once the retention setting says so."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from runmesh.core.settings import Settings
from runmesh.core.settings_parts import PipelineSettings
from runmesh.gateway.pipelines.workspaces import WorkspaceSweeper
from runmesh.storage import platform_storage

from .conftest import RunClient, WorkerFactory
from .test_pipelines import ended, http, result_of, start, step, tenant

__all__ = ["http", "tenant"]  # fixtures

pytestmark = pytest.mark.slow


def write_then_read(name: str = "${{ params.name }}") -> dict[str, Any]:
    return {
        "write": step("workspace_write", {"name": "notes.txt", "text": "from write"}),
        "read": step(
            "workspace_read", {"name": name, "text": "${{ pipeline.workspace }}"}, "write"
        ),
    }


async def files_in(settings: Settings, uri: str) -> list[str]:
    prefix = uri.removeprefix(f"s3://{settings.s3.bucket}/")
    async with platform_storage(settings.s3, prefix=prefix) as storage:
        return [info.path async for info in storage.list(recursive=True)]


def sweeper(settings: Settings, pool: asyncpg.Pool, retention_s: float) -> WorkspaceSweeper:
    part = PipelineSettings(workspace_retention_s=retention_s, workspace_sweep_interval_s=60)
    return WorkspaceSweeper(part, settings.s3, pool)


async def test_steps_share_a_workspace_a_resume_keeps_it_and_retention_cleans_it(
    http: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool, tenant: str
) -> None:
    # The read step names a file that is not there: it fails, after write succeeded.
    first = await start(http, write_then_read(), params={"name": "missing.txt"})
    first_id = first["run"]["id"]
    failed = await ended(http, first_id)
    assert failed["run"]["state"] == "failed", failed
    workspace = f"s3://{settings.s3.bucket}/runs/{tenant}/{first_id}/workspace/"
    assert await files_in(settings, workspace) == ["notes.txt"]

    # Resumed with the right name, read finds what the first run's write step left there.
    resumed = await http.post(
        f"/v1/pipelines/{first_id}/resume", json={"params": {"name": "notes.txt"}}
    )
    assert resumed.status_code == 202, resumed.text
    done = await ended(http, resumed.json()["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    assert await result_of(http, done, "read") == {"text": "from write", "uri": workspace}

    # A workspace in use is kept whatever the retention; one whose runs all ended goes.
    running = await start(http, {"hold": step("sleep", {"seconds": 60})})
    try:
        running_workspace = (
            f"s3://{settings.s3.bucket}/runs/{tenant}/{running['run']['id']}/workspace/"
        )
        assert workspace not in await sweeper(settings, pool, 3600).sweep()
        cleaned = await sweeper(settings, pool, 0).sweep()
        assert workspace in cleaned and running_workspace not in cleaned
        assert await files_in(settings, workspace) == []
        stored = await pool.fetch(
            "SELECT workspace_cleaned_at FROM runs.pipelines WHERE workspace = $1", workspace
        )
        assert len(stored) == 2 and all(row["workspace_cleaned_at"] for row in stored)
        assert workspace not in await sweeper(settings, pool, 0).sweep()  # once
    finally:
        await http.post(f"/v1/runs/{running['run']['id']}/cancel")
        await ended(http, running["run"]["id"])


async def test_a_request_naming_another_tenants_workspace_fails(
    client: RunClient, worker: WorkerFactory
) -> None:
    """A request straight on Kafka may name any folder; the worker runs none outside the
    requesting tenant's."""
    other = f"runs/someone-else/{uuid.uuid4()}/workspace/"
    async with worker():
        request = await client.submit("workspace_read", {"name": "x"}, workspace=other)
        terminal = await client.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.failed"
    assert terminal.payload.error_type == "InvalidWorkspace"  # type: ignore[attr-defined]
    assert "is not one of tenant" in terminal.payload.message  # type: ignore[attr-defined]
