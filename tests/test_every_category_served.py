"""Every category `runmesh plugin create` offers runs on the sandbox with no extra command:
`runmesh dev` starts one worker process serving the categories no service serves, and a
published data_validation, smart_tool and post_annotation plugin each run there. Real
broker, PostgreSQL and moto S3; the worker is the exact process `runmesh dev` starts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runmesh.cli.__main__ import main
from runmesh.cli.services import service_specs, start_service, unserved_categories
from runmesh.core.events import FailedPayload, SucceededPayload
from runmesh.core.settings import Settings

from .conftest import GatewayHandle, RunClient

pytestmark = pytest.mark.slow

BOX = {"type": "bounding_box", "class_name": "cat"}
IMAGE = {
    "file_name": "a.jpg",
    "width": 64,
    "height": 48,
    "annotations": [
        {**BOX, "id": "in", "bbox": [0, 0, 10, 10]},
        {**BOX, "id": "out", "bbox": [60, 0, 10, 10]},
    ],
}
RUNS = {  # category: (the template's action, its params, what its result holds)
    "data_validation": ("validation", {"data": {"images": [IMAGE]}, "classes": ["cat"]}, "valid"),
    "smart_tool": ("auto_label", {"width": 100, "height": 50}, "annotations"),
    "post_annotation": ("post_annotation", {"data": {"images": [IMAGE]}}, "data"),
}


@pytest.fixture
async def dev_worker(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """The plugins worker of `runmesh dev`, as a process of its own."""
    settings = settings.model_copy(update={"plugin_cache_dir": tmp_path / "plugin-cache"})
    [spec] = [s for s in service_specs(settings, demo=False) if s.name == "plugins-worker"]
    child = await start_service(spec, tmp_path)
    try:
        yield settings
    finally:
        await child.stop()


def test_dev_serves_every_category_without_a_service() -> None:
    assert unserved_categories() == list(RUNS)


async def test_published_plugins_of_every_other_category_run_on_the_dev_worker(
    dev_worker: Settings, tmp_path: Path
) -> None:
    gateway = GatewayHandle(dev_worker)
    await gateway.start()
    clients = {category: RunClient(dev_worker, category) for category in RUNS}
    for client in clients.values():
        await client.start()
    try:
        tenant = f"every-{uuid.uuid4().hex[:8]}"
        token = await gateway.token(tenant)
        root = ["--gateway-url", gateway.url, "--token", token]
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as api:
            for category, (action, params, key) in RUNS.items():
                code = f"every-{category.replace('_', '-')}"
                create = ["--category", category, "--code", code, "--version", "1.0.0"]
                assert (
                    await asyncio.to_thread(
                        main, [*root, "plugin", "create", *create, "-o", str(tmp_path)]
                    )
                    == 0
                )
                project = tmp_path / f"runmesh-{code}-plugin"
                assert (
                    await asyncio.to_thread(main, [*root, "plugin", "publish", str(project)]) == 0
                )

                body: dict[str, Any] = {
                    "category": category,
                    "plugin": f"{code}@1.0.0",
                    "action": action,
                    "params": params,
                }
                response = await api.post("/v1/runs", json=body)
                assert response.status_code == 202, response.text
                run_id = uuid.UUID(response.json()["id"])
                terminal = await clients[category].wait_terminal(run_id, timeout=240)
                if isinstance(terminal.payload, FailedPayload):
                    pytest.fail(f"{category}: {terminal.payload.message}")
                assert isinstance(terminal.payload, SucceededPayload)
                assert key in terminal.payload.result, (category, terminal.payload.result)
    finally:
        for client in clients.values():
            await client.stop()
        await gateway.stop()
