"""The plugin author's path end to end, with the CLI as a user types it: create from the
category's template → validate → publish → submit `code@1.0.0` → the plugin's own output;
a second version published while pinned runs keep running 1.0.0. For an export plugin and a
neural_net plugin, on a gateway and export and train services over real broker, PostgreSQL
and moto S3."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from runmesh.cli.__main__ import main
from runmesh.core.events import FailedPayload, LogPayload, RunEventBase, SucceededPayload
from runmesh.core.settings import Settings
from runmesh.export import BUILTIN_PLUGIN as EXPORT_PLUGIN
from runmesh.train import BUILTIN_PLUGIN as TRAIN_PLUGIN

from .conftest import GatewayHandle, RunClient, service_worker
from .test_export import make_destination, seed
from .test_train import coco_dataset, train_params


@dataclass
class Mesh:
    settings: Settings
    gateway: GatewayHandle
    exports: RunClient
    trains: RunClient
    api: httpx.AsyncClient
    token: str
    tenant: str

    async def cli(self, *args: str) -> int:
        """`runmesh ARGS` in a thread (the command runs its own event loop)."""
        root = ["--gateway-url", self.gateway.url, "--token", self.token]
        return await asyncio.to_thread(main, [*root, *args])

    async def create_and_publish(self, category: str, code: str, where: Path) -> Path:
        """`plugin create` version 1.0.0, `validate`, `publish`: the project's directory."""
        args = ["--category", category, "--code", code, "--version", "1.0.0", "-o", str(where)]
        assert await self.cli("plugin", "create", *args) == 0
        project = where / f"runmesh-{code}-plugin"
        assert await self.cli("plugin", "validate", str(project)) == 0
        assert await self.cli("plugin", "publish", str(project)) == 0
        return project

    async def run(
        self, client: RunClient, plugin: str, action: str, params: dict[str, Any]
    ) -> tuple[RunEventBase, list[RunEventBase]]:
        category = client.category
        body = {"category": category, "plugin": plugin, "action": action, "params": params}
        response = await self.api.post("/v1/runs", json=body)
        assert response.status_code == 202, response.text
        run_id = uuid.UUID(response.json()["id"])
        terminal = await client.wait_terminal(run_id, timeout=180)
        return terminal, client.events[run_id]


@pytest.fixture
async def mesh(settings: Settings, tmp_path: Path) -> AsyncIterator[Mesh]:
    settings = settings.model_copy(update={"plugin_cache_dir": tmp_path / "plugin-cache"})
    gateway = GatewayHandle(settings)
    await gateway.start()
    exports, trains = RunClient(settings, "export"), RunClient(settings, "neural_net")
    await exports.start()
    await trains.start()
    tenant = f"lc-{uuid.uuid4().hex[:8]}"
    try:
        async with (
            service_worker(settings, "export", EXPORT_PLUGIN, service="export"),
            service_worker(settings, "neural_net", TRAIN_PLUGIN, service="train"),
        ):
            token = await gateway.token(tenant)
            async with httpx.AsyncClient(
                base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as api:
                yield Mesh(settings, gateway, exports, trains, api, token, tenant)
    finally:
        await trains.stop()
        await exports.stop()
        await gateway.stop()


def logs(events: list[RunEventBase]) -> list[str]:
    return [e.payload.message for e in events if isinstance(e.payload, LogPayload)]


def succeeded(terminal: RunEventBase) -> dict[str, Any]:
    if isinstance(terminal.payload, FailedPayload):
        pytest.fail(f"{terminal.payload.error_type}: {terminal.payload.message}")
    assert isinstance(terminal.payload, SucceededPayload), terminal.payload
    return terminal.payload.result


async def test_an_export_plugin_from_create_to_pinned_versions(
    mesh: Mesh, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    code = f"lc-export-{uuid.uuid4().hex[:6]}"
    project = await mesh.create_and_publish("export", code, tmp_path)

    seeded = await seed(pool, mesh.settings, mesh.tenant, 12)
    destination = await make_destination(pool, mesh.tenant, tmp_path / "out")

    def params(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "storage": str(destination),
            "target": "task",
            "filter": {"project": str(seeded.project)},
            "path": "exports",
        }

    terminal, events = await mesh.run(mesh.exports, f"{code}@1.0.0", "export", params("v1"))
    result = succeeded(terminal)
    assert result["format"] == "jsonl"  # the plugin's own writer, not the built-in formats
    folder = tmp_path / "out" / result["path"]
    lines = (folder / "annotations.jsonl").read_text().splitlines()
    assert len(lines) == result["items"]["exported"] > 0
    assert f"{code} 1.0.0: exporting" in logs(events)

    # Version 1.1.0 writes another file name; runs pinned to 1.0.0 keep the first one.
    module = project / "plugin" / "export.py"
    module.write_text(module.read_text().replace('"annotations.jsonl"', '"boxes-v2.jsonl"'))
    config = project / "config.yaml"
    config.write_text(config.read_text().replace("1.0.0", "1.1.0"))
    assert await mesh.cli("plugin", "publish", str(project)) == 0
    for plugin, name, expected in [
        (f"{code}@1.0.0", "pinned", "annotations.jsonl"),
        (f"{code}@1.1.0", "v2", "boxes-v2.jsonl"),
        (code, "latest", "boxes-v2.jsonl"),
    ]:
        terminal, events = await mesh.run(mesh.exports, plugin, "export", params(name))
        result = succeeded(terminal)
        assert (tmp_path / "out" / result["path"] / expected).is_file(), plugin
        version = "1.0.0" if expected == "annotations.jsonl" else "1.1.0"
        assert f"{code} {version}: exporting" in logs(events), plugin
    # Publishing 1.1.0 again is refused, and says why.
    assert await mesh.cli("plugin", "publish", str(project)) == 1


async def test_a_neural_net_plugin_from_create_to_a_registered_model(
    mesh: Mesh, tmp_path: Path
) -> None:
    code = f"lc-train-{uuid.uuid4().hex[:6]}"
    await mesh.create_and_publish("neural_net", code, tmp_path)

    dataset = await coco_dataset(mesh.settings, 12, seed=3, tenant=mesh.tenant)
    params = train_params(dataset, f"model-{code}", epochs=3)
    terminal, events = await mesh.run(mesh.trains, f"{code}@1.0.0", "train", params)
    result = succeeded(terminal)
    assert f"{code} 1.0.0: training" in logs(events)
    # The plugin's own hook reported its network, in the metrics category it declares.
    network = [e for e in events if e.type == "run.metric" and e.payload.category == "network"]  # type: ignore[union-attr]
    assert network and network[0].payload.values["parameters"] > 0  # type: ignore[union-attr]
    model = (await mesh.api.get(f"/v1/models/{result['model_id']}")).json()
    assert model["name"] == f"model-{code}"
