"""Attack 6 (metrics): /metrics must not show a tenant's own names.

A tenant names the category of the plugins it publishes (and a plugin on RUNMESH_PLUGIN_PATH
names its own); as a Prometheus label that name reaches everyone who scrapes the gateway or a
worker. Only built-in categories are labels; every other counts as `other`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from prometheus_client import generate_latest

from runmesh.plugins.archive import build_archive
from runmesh.plugins.loader import load_plugin

from ..conftest import GatewayHandle, RunClient, WorkerFactory

ACTION = '''\
"""A tenant's plugin of a category of its own."""

from runmesh.plugins import Action


class Secret(Action):
    """Does nothing."""

    def start(self) -> dict:
        return {}
'''


def private_plugin(directory: Path, code: str, category: str) -> bytes:
    """The archive of a plugin whose category is `category` (a tenant's private name)."""
    (directory / "plugin").mkdir(parents=True)
    (directory / "plugin" / "__init__.py").write_text("")
    (directory / "plugin" / "secret.py").write_text(ACTION)
    (directory / "config.yaml").write_text(
        f"code: {code}\nname: Secret\nversion: '1.0.0'\ncategory: {category}\n"
        "actions:\n  secret:\n    entrypoint: plugin.secret.Secret\n    method: job\n"
    )
    plugin = load_plugin(directory)
    return build_archive(directory, {n: a.manifest() for n, a in plugin.actions.items()})


async def test_a_published_plugins_own_category_never_labels_gateway_metrics(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    tenant = f"b-{uuid.uuid4().hex[:8]}"
    category = f"private_{uuid.uuid4().hex[:8]}"
    code = f"secret-{uuid.uuid4().hex[:6]}"
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as api:
        published = await api.post(
            "/v1/plugins",
            files={"archive": ("p.zip", private_plugin(tmp_path, code, category), "x/zip")},
        )
        assert published.status_code == 201, published.text
        submitted = await api.post(
            "/v1/runs", json={"category": category, "plugin": code, "action": "secret"}
        )
        assert submitted.status_code == 202, submitted.text
        metrics = await api.get("/metrics")
    assert metrics.status_code == 200
    assert category not in metrics.text
    assert 'runmesh_gateway_runs_submitted_total{category="other"} 1.0' in metrics.text


async def test_a_plugin_path_category_never_labels_worker_metrics(
    client: RunClient, worker: WorkerFactory
) -> None:
    # The test plugin's category, `test`, is not built in: as a label it is `other`.
    async with worker() as running:
        request = await client.submit("noop")
        terminal = await client.wait_terminal(request.run_id)
        text = generate_latest(running.metrics.registry).decode()
    assert terminal.type == "run.succeeded"
    assert 'category="test"' not in text
    assert 'runmesh_runs_finished_total{category="other",state="succeeded"} 1.0' in text
    assert 'runmesh_events_published_total{category="other",type="run.started"}' in text
