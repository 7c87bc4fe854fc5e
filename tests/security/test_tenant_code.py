"""Attack 1: a published plugin's code held the platform's credentials.

Tenant B publishes a `method: job` plugin that looks for the platform's keys everywhere a
process on the worker's host could: its environment and settings, the worker's environment
(/proc), dev.json and other files, the sandbox's unauthenticated Kafka and S3 ports, the
database as the platform's user without a password, and the worker itself through the job's
pipe (a pickle the worker would run). It also queries the catalog with the database role it is
given. Each probe must fail, and the role must see only B's catalog rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from runmesh.core.events import FailedPayload, SucceededPayload
from runmesh.core.settings import Settings
from runmesh.export import BUILTIN_PLUGIN

from ..conftest import GatewayHandle, RunClient, service_worker
from ..test_plugin_publishing import archive_of, publish

SPY = '''\
"""Looks for the platform's credentials from inside a job."""

import asyncio
import gc
import os
import socket

import asyncpg
from pydantic import BaseModel

from runmesh.plugins import Action


class SpyParams(BaseModel):
    secret_file: str
    pg_host: str
    pg_port: int
    tcp_ports: list[int]
    marker: str
    worker_pid: int = 1
    pickle_worker: bool = False


class Pwn:
    """Unpickling this runs a command: what a worker that unpickles job messages would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def attempt(fn):
    try:
        return "ok: " + str(fn())[:200]
    except BaseException as exc:  # noqa: BLE001
        return f"refused: {type(exc).__name__}: {exc}"[:300]


class Spy(Action):
    params_model = SpyParams

    def start(self) -> dict:
        p = self.params
        if p.pickle_worker:
            from multiprocessing.connection import Connection

            for obj in gc.get_objects():
                if isinstance(obj, Connection) and not obj.closed:
                    obj.send(Pwn(p.marker))
            return {}
        settings = self.run.context.settings
        found = {
            "env": sorted(k for k in os.environ if k.startswith(("RUNMESH_", "AWS_"))),
            "settings_s3_secret": settings.s3_secret_access_key is not None,
            "settings_s3_key": settings.s3_access_key_id,
            "settings_token": settings.token is not None,
            "settings_kafka": settings.kafka_bootstrap,
            "dsn_user": asyncpg_user(settings.database_url),
            "secret_file": attempt(lambda: open(p.secret_file).read()),
            "worker_environ": attempt(lambda: open(f"/proc/{p.worker_pid}/environ").read()),
            "server_environ": attempt(lambda: open(f"/proc/{os.getppid()}/environ").read()),
            "proc_net_unix": attempt(lambda: open("/proc/net/unix").read()),
            "etc_shadow": attempt(lambda: open("/etc/shadow").read()),
            "ssl_private": attempt(lambda: os.listdir("/etc/ssl/private")),
            "list_tmp": attempt(lambda: os.listdir("/tmp")),
            "signal_parent": attempt(lambda: os.kill(os.getppid(), 0)),
        }
        for port in p.tcp_ports:
            found[f"tcp_{port}"] = attempt(lambda: socket.create_connection(("127.0.0.1", port), 5))
        found.update(asyncio.run(self.catalog(settings.database_url, p)))
        return found

    async def catalog(self, dsn, p):
        out = {}
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            tenant = self.run.context.tenant
            out["own_storages"] = await conn.fetchval("SELECT count(*) FROM catalog.storages")
            out["foreign_storages"] = await conn.fetchval(
                "SELECT count(*) FROM catalog.storages WHERE tenant <> $1", tenant
            )
            for name, sql in {
                "runs": "SELECT count(*) FROM runs.runs",
                "tokens": "SELECT count(*) FROM runs.api_tokens",
                "run_roles": "SELECT count(*) FROM catalog.run_roles",
            }.items():
                try:
                    out[name] = f"ok: {await conn.fetchval(sql)}"
                except Exception as exc:  # noqa: BLE001
                    out[name] = f"refused: {type(exc).__name__}"
        finally:
            await conn.close()
        try:
            other = await asyncpg.connect(
                host=p.pg_host, port=p.pg_port, user="postgres", database="postgres", timeout=10
            )
            await other.close()
            out["platform_user"] = "ok: connected"
        except Exception as exc:  # noqa: BLE001
            out["platform_user"] = f"refused: {type(exc).__name__}"
        return out


def asyncpg_user(dsn):
    from urllib.parse import urlsplit

    return urlsplit(dsn).username
'''


@dataclass
class Spy:
    settings: Settings
    runs: RunClient
    api: httpx.AsyncClient
    tenant: str
    code: str


@pytest.fixture
async def spy(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Spy]:
    """Tenant B's spy plugin, published, and an export worker that runs it."""
    # What a worker's environment holds in production (the Helm chart passes secrets so).
    monkeypatch.setenv("RUNMESH_S3_SECRET_ACCESS_KEY", "canary-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    settings = settings.model_copy(update={"plugin_cache_dir": tmp_path / "plugin-cache"})
    code = f"spy-{uuid.uuid4().hex[:6]}"
    project = tmp_path / "spy"
    (project / "plugin").mkdir(parents=True)
    (project / "plugin" / "__init__.py").write_text("")
    (project / "plugin" / "spy.py").write_text(SPY)
    (project / "requirements.txt").write_text("")
    (project / "config.yaml").write_text(
        f"code: {code}\nname: Spy\nversion: '1.0.0'\ncategory: export\ndata_types: [image]\n"
        "actions:\n  spy:\n    entrypoint: plugin.spy.Spy\n    method: job\n"
    )
    gateway = GatewayHandle(settings)
    await gateway.start()
    runs = RunClient(settings, category="export")
    await runs.start()
    tenant = f"b-{uuid.uuid4().hex[:8]}"
    try:
        async with service_worker(settings, "export", BUILTIN_PLUGIN, service="export"):
            token = await gateway.token(tenant)
            async with httpx.AsyncClient(
                base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as api:
                assert (await publish(api, archive_of(project))).status_code == 201
                yield Spy(settings, runs, api, tenant, code)
    finally:
        await runs.stop()
        await gateway.stop()


async def run_spy(spy: Spy, params: dict[str, Any]) -> Any:
    body = {"category": "export", "plugin": spy.code, "action": "spy", "params": params}
    response = await spy.api.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    return (await spy.runs.wait_terminal(uuid.UUID(response.json()["id"]), timeout=180)).payload


def port_of(url: str | None) -> int:
    port = urlsplit(url if url and "//" in url else f"//{url}").port
    assert port is not None, url
    return port


async def test_published_code_finds_no_platform_credential_and_sees_only_its_tenant(
    spy: Spy, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = spy.settings
    secret_file = tmp_path / "dev.json"
    secret_file.write_text('{"database_url": "the platform DSN"}')
    for tenant in (spy.tenant, "someone-else"):
        await pool.execute(
            "INSERT INTO catalog.storages (id, tenant, name, provider, config) "
            "VALUES ($1, $2, $3, 's3', '{}'::jsonb)",
            uuid.uuid4(),
            tenant,
            f"spy-{uuid.uuid4().hex[:6]}",
        )
    database = urlsplit(settings.database_url)
    kafka_port = port_of(settings.kafka_bootstrap)
    s3_port = port_of(settings.s3_endpoint_url)
    payload = await run_spy(
        spy,
        {
            "secret_file": str(secret_file),
            "pg_host": database.hostname,
            "pg_port": database.port,
            "tcp_ports": [kafka_port, s3_port],
            "marker": str(tmp_path / "unused"),
            "worker_pid": os.getpid(),  # the worker runs in this process
        },
    )
    if isinstance(payload, FailedPayload):
        pytest.fail(f"{payload.error_type}: {payload.message}\n{payload.traceback}")
    assert isinstance(payload, SucceededPayload)
    found = payload.result
    # Nothing of the platform's in the job's environment or settings.
    assert found["env"] == []
    assert found["settings_s3_secret"] is False
    assert found["settings_s3_key"] is None
    assert found["settings_token"] is False
    assert found["settings_kafka"] is None
    assert found["dsn_user"].startswith("rm_run_")
    assert found["dsn_user"] != database.username
    # Nothing of the host's: files, the worker's environment, other processes.
    probes = ("secret_file", "worker_environ", "server_environ", "proc_net_unix", "etc_shadow")
    for probe in (*probes, "list_tmp", "ssl_private"):
        assert found[probe].startswith("refused: PermissionError"), (probe, found[probe])
    assert found["signal_parent"].startswith("refused: PermissionError"), found
    # The sandbox's Kafka and S3 take no credentials: the job cannot reach them at all.
    for port in (kafka_port, s3_port):
        assert found[f"tcp_{port}"].startswith("refused: PermissionError"), found
    # The catalog, through the run's role: B's rows only; the gateway's tables not at all.
    assert found["own_storages"] >= 1
    assert found["foreign_storages"] == 0
    for table in ("runs", "tokens", "run_roles"):
        assert found[table] == "refused: InsufficientPrivilegeError", (table, found[table])
    # And the platform's own database user needs the password the job never saw.
    assert found["platform_user"] == "refused: InvalidPasswordError", found["platform_user"]


async def test_a_job_that_sends_the_worker_a_pickle_fails_and_the_worker_runs_none_of_it(
    spy: Spy, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = await run_spy(
        spy,
        {
            "secret_file": "/nonexistent",
            "pg_host": "127.0.0.1",
            "pg_port": 1,
            "tcp_ports": [],
            "marker": str(marker),
            "pickle_worker": True,
        },
    )
    assert isinstance(payload, FailedPayload), payload
    assert payload.error_type == "JobProtocolError"
    assert not marker.exists()
