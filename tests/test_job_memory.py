"""Job resources that fit ML (issue 18 item 1): no blanket address-space limit; a job's memory
limit is its run's `resources.memory_mb` (the submission's, else its action's config.yaml),
enforced by a cgroup of the job's own where the worker can make one, else by an opt-in
RLIMIT_DATA; a job killed or failed for memory says `out of memory (limit N MB)`; a job sees
only the GPUs its worker gave it. Real Tansu, PostgreSQL and job processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runmesh.core.events import RunFailed, RunSucceeded
from runmesh.core.run_policy import Resources
from runmesh.core.testing import eventually
from runmesh.execution.memory_limit import JobCgroups, MemoryLimitError
from runmesh.worker import Worker

from .conftest import (
    CATEGORY,
    GatewayHandle,
    RunClient,
    WorkerFactory,
    tenant_client,
    until_plugin_known,
)

DEADLINE_S = 180.0  # catches a hang: writing 3 GiB twice takes seconds on a loaded machine


def cgroups_here() -> bool:
    """Whether this process may make memory cgroups (the worker's `auto` then uses them)."""
    try:
        JobCgroups.open().close()
    except MemoryLimitError:
        return False
    return True


def job_groups(worker: Worker) -> list[str]:
    cgroups = worker._attempts.job_cgroups
    assert cgroups is not None, "the worker did not make its jobs' cgroup folder"
    return sorted(child.name for child in cgroups.folder.iterdir() if child.is_dir())


@pytest.mark.slow  # writes 3 GiB twice per mode
@pytest.mark.parametrize("mode", ["cgroup", "rlimit"])
async def test_3_gb_succeeds_under_a_4_gb_limit_and_fails_clearly_under_1_gb(
    mode: str, client: RunClient, worker: WorkerFactory
) -> None:
    if mode == "cgroup" and not cgroups_here():
        pytest.skip("this host gives this process no memory cgroup to delegate")
    async with worker(job_memory_limit=mode) as running:
        roomy = await client.submit("hog", {"mb": 3072}, resources=Resources(memory_mb=4096))
        roomy_end = await client.wait_terminal(roomy.run_id, timeout=DEADLINE_S)
        tight = await client.submit("hog", {"mb": 3072}, resources=Resources(memory_mb=1024))
        tight_end = await client.wait_terminal(tight.run_id, timeout=DEADLINE_S)
        if mode == "cgroup":  # each job's group is gone with it
            assert job_groups(running) == []
    assert isinstance(roomy_end, RunSucceeded), roomy_end
    assert roomy_end.payload.result == {"allocated": 3072}
    assert isinstance(tight_end, RunFailed), tight_end
    assert tight_end.payload.error_type == "OutOfMemory"
    assert tight_end.payload.message.startswith("out of memory (limit 1024 MB)")


async def test_without_a_limit_of_its_own_a_job_gets_the_platform_default(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(job_memory_limit="rlimit", job_memory_mb=512):
        hog = await client.submit("hog", {"mb": 1024})
        end = await client.wait_terminal(hog.run_id, timeout=DEADLINE_S)
    assert isinstance(end, RunFailed) and end.payload.error_type == "OutOfMemory"
    assert "limit 512 MB" in end.payload.message


async def test_off_sets_no_limit(client: RunClient, worker: WorkerFactory) -> None:
    async with worker(job_memory_limit="off", job_memory_mb=256):
        hog = await client.submit("hog", {"mb": 512})
        end = await client.wait_terminal(hog.run_id, timeout=DEADLINE_S)
    assert isinstance(end, RunSucceeded), end


async def test_a_job_sees_only_the_gpus_its_worker_gave_it(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(worker_gpu_devices=["GPU-a", "GPU-b"], worker_gpus=0):
        both = await client.submit("visible_gpus", resources=Resources(gpus=2))
        one = await client.submit("visible_gpus", resources=Resources(gpus=1))
        none = await client.submit("visible_gpus")
        ends = [await client.wait_terminal(r.run_id, timeout=DEADLINE_S) for r in (both, one, none)]
    seen = []
    for end in ends:
        assert isinstance(end, RunSucceeded), end
        seen.append(end.payload.result["cuda_visible_devices"])
    assert seen[0] == "GPU-a,GPU-b"
    assert seen[1] in {"GPU-a", "GPU-b"}
    assert seen[2] == ""  # asked for none: sees none, not the worker's


@pytest.fixture
async def api(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(gateway, f"memory-{uuid.uuid4().hex[:8]}") as http:
        yield http


async def test_an_actions_config_yaml_limit_applies_to_a_submission_naming_none(
    api: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker(job_memory_limit="rlimit"):
        await until_plugin_known(api)

        async def submitted(body: dict[str, Any]) -> str:
            response = await api.post("/v1/runs", json={"category": CATEGORY, **body})
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        limited = await submitted({"action": "hog_limited", "params": {"mb": 2048}})
        roomier = await submitted(
            {
                "action": "hog_limited",
                "params": {"mb": 2048},
                "resources": {"memory_mb": 3072},
            }
        )

        async def ended(run_id: str) -> dict[str, Any] | None:
            run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
            return run if run["state"] in {"succeeded", "failed"} else None

        limited_run = await eventually(lambda: ended(limited), timeout=DEADLINE_S)
        roomier_run = await eventually(lambda: ended(roomier), timeout=DEADLINE_S)
    assert limited_run["state"] == "failed", limited_run
    assert limited_run["error"]["type"] == "OutOfMemory"
    assert "out of memory (limit 1024 MB)" in limited_run["error"]["message"]
    assert roomier_run["state"] == "succeeded", roomier_run
