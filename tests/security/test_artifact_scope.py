"""Attack 2: a run's artifact download served any object of the platform bucket.

A run reports its artifacts' URIs itself, so tenant B's code could report
`s3://runmesh/plugins/<A>/<code>/1.0.0.zip` (A's published archive) or A's uploaded images,
and `GET /v1/runs/<B's run>/artifacts/<event>` with B's token streamed them. The gateway now
serves only what lies under the run's own folders (`runs/<tenant>/<run>/`,
`models/<tenant>/<run>/`); anything else is a 409 naming the URI.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.storage import platform_storage

from ..conftest import GatewayHandle, RunClient, WorkerFactory

JSON = {"Accept": "application/json"}


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


async def artifact_event(http: httpx.AsyncClient, run_id: uuid.UUID) -> int:
    """The id of the run's `run.artifact` event, once the gateway has stored it."""

    async def stored() -> int | None:
        response = await http.get(f"/v1/runs/{run_id}/events", headers=JSON)
        if response.status_code != 200:
            return None
        events: list[dict[str, Any]] = response.json()
        return next((e["id"] for e in events if e["type"] == "run.artifact"), None)

    found: int = await eventually(stored, timeout=30, message=f"no artifact of {run_id}")
    return found


async def test_a_run_cannot_serve_another_tenants_objects_as_its_artifacts(
    settings: Settings, gateway: GatewayHandle, worker: WorkerFactory, client: RunClient
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    bucket = settings.s3_bucket
    archive = f"plugins/{tenant_a}/secret-{uuid.uuid4().hex[:6]}/1.0.0.zip"
    image = f"{tenant_a}/{uuid.uuid4()}/{uuid.uuid4()}/image/u-0000.png"
    own_run, other_run = uuid.uuid4(), uuid.uuid4()
    own = f"runs/{tenant_b}/{own_run}/report.txt"
    async with platform_storage(settings.s3) as storage:
        await storage.write_bytes(archive, b"A's plugin archive")
        await storage.write_bytes(image, b"A's image")
        await storage.write_bytes(own, b"B's own report")

    attempts = {
        "archive": (uuid.uuid4(), f"s3://{bucket}/{archive}"),
        "image": (uuid.uuid4(), f"s3://{bucket}/{image}"),
        # Up and out of the run's own folder, and into another run's folder of the tenant.
        "dotdot": (uuid.uuid4(), f"s3://{bucket}/runs/{tenant_b}/{own_run}/../../../{image}"),
        "other_run": (other_run, f"s3://{bucket}/{own}"),
        "own": (own_run, f"s3://{bucket}/{own}"),
    }
    async with worker(), api(gateway, tenant_b) as http:
        for name, (run_id, uri) in attempts.items():
            await client.submit(
                "artifact", {"name": name, "uri": uri}, tenant=tenant_b, run_id=run_id
            )
        answers: dict[str, httpx.Response] = {}
        for name, (run_id, _) in attempts.items():
            event_id = await artifact_event(http, run_id)
            answers[name] = await http.get(f"/v1/runs/{run_id}/artifacts/{event_id}")

    for name in ("archive", "image", "dotdot", "other_run"):
        refused = answers[name]
        assert refused.status_code == 409, (name, refused.status_code, refused.text[:200])
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "run's own folders" in refused.json()["detail"], refused.text
        assert b"A's" not in refused.content
    served = answers["own"]
    assert served.status_code == 200, served.text
    assert served.content == b"B's own report"
