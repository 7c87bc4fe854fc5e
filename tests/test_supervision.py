"""Supervised processes (issue 19, item 5): `runmesh dev` restarts a dead worker or gateway
and logs it; a run whose worker died is taken over by its next attempt, and the run says so
(`attempt 2 after worker lost`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from runmesh.core.kafka import make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway.run_state import WORKER_LOST, RunSnapshot, apply_events
from runmesh.sandbox.processes import free_port

from .conftest import CATEGORY, GatewayHandle, settings_env
from .test_aggregator import Events, produce


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A tenant of the test's own: the hand-made events carry none, so they get this one."""
    return settings.model_copy(update={"tenant": f"sup-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    instance = make_producer(settings.kafka)
    await instance.start()
    yield instance
    await instance.stop()


def test_a_later_attempt_of_an_unfinished_run_is_a_retry_after_a_lost_worker() -> None:
    run = Events()
    first = apply_events(RunSnapshot(), [run.started(1), run.progress(3, 10, 1)])
    assert (first.attempt, first.retry_reason) == (1, None)
    second = apply_events(first, [run.started(2)])
    assert (second.state, second.attempt, second.retry_reason) == ("running", 2, WORKER_LOST)
    # The reason stays with the attempt, also once it ended; a stale event of attempt 1
    # changes nothing.
    ended = apply_events(second, [run.progress(9, 10, 1), run.succeeded(2)])
    assert (ended.state, ended.attempt, ended.retry_reason) == ("succeeded", 2, WORKER_LOST)


async def test_the_run_says_attempt_2_after_worker_lost(
    gateway: GatewayHandle, settings: Settings, producer: AIOKafkaProducer
) -> None:
    lost, healthy = Events(), Events()
    token = await gateway.token(settings.tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as api:

        async def run(events: Events, **expected: Any) -> dict[str, Any] | None:
            response = await api.get(f"/v1/runs/{events.run_id}")
            if response.status_code != 200:
                return None
            body: dict[str, Any] = response.json()
            return body if all(body[k] == v for k, v in expected.items()) else None

        # Attempt 1 starts and reports, then its worker dies: no terminal event.
        await produce(producer, settings, lost.started(1), lost.progress(3, 10, 1))
        await produce(producer, settings, healthy.started(1), healthy.succeeded(1))
        first = await eventually(
            lambda: run(lost, attempt=1, state="running"), timeout=30, message="attempt 1"
        )
        assert first["retry_reason"] is None
        # The request is delivered again: attempt 2 starts while attempt 1 never ended.
        await produce(producer, settings, lost.started(2))
        second = await eventually(lambda: run(lost, attempt=2), timeout=30, message="attempt 2")
        assert (second["state"], second["retry_reason"]) == ("running", "worker lost")
        await produce(producer, settings, lost.succeeded(2))
        done = await eventually(
            lambda: run(lost, state="succeeded"), timeout=30, message="attempt 2 never ended"
        )
        assert (done["attempt"], done["retry_reason"]) == (2, "worker lost")
        # A run that ended on its first attempt has no reason.
        ok = await eventually(lambda: run(healthy, state="succeeded"), timeout=30)
        assert (ok["attempt"], ok["retry_reason"]) == (1, None)
        # Lists carry it too.
        listed = (await api.get("/v1/runs")).json()["items"]
        assert {(r["id"], r["retry_reason"]) for r in listed} == {
            (str(lost.run_id), "worker lost"),
            (str(healthy.run_id), None),
        }


async def test_a_worker_process_serves_healthz_beside_its_metrics(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings.model_copy(update={"metrics_port": port}))
    argv = [sys.executable, "-m", "runmesh.worker", "--category", CATEGORY]
    with (tmp_path / "worker.log").open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as probe:

            async def healthy() -> dict[str, Any] | None:
                with contextlib.suppress(httpx.TransportError):
                    response = await probe.get("/healthz")
                    if response.status_code == 200:
                        body: dict[str, Any] = response.json()
                        return body
                return None

            health = await eventually(healthy, timeout=60, message="no /healthz")
            assert health["status"] == "ok" and health["loop_silent_s"] < 5
            metrics = await probe.get("/metrics")
        assert metrics.status_code == 200
        assert "runmesh_runs_in_flight" in metrics.text
        assert "# TYPE runmesh_retries_total counter" in metrics.text  # the process's retries
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                await worker.wait()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()


# -- runmesh dev --------------------------------------------------------------------------------

NAP = """\
\"\"\"An export-category plugin that naps, reporting progress (a run long enough to kill).\"\"\"

import time

from pydantic import BaseModel, Field

from runmesh.plugins import Action


class NapParams(BaseModel):
    seconds: float = Field(default=1.0, ge=0, le=60)


class Nap(Action):
    params_model = NapParams

    def start(self) -> dict:
        for step in range(20):
            time.sleep(self.params.seconds / 20)
            self.run.set_progress(step + 1, 20)
        return {"slept": self.params.seconds}
"""
CONNECTION_VARIABLES = (
    "RUNMESH_KAFKA_BOOTSTRAP",
    "RUNMESH_DATABASE_URL",
    "RUNMESH_S3_ENDPOINT_URL",
    "RUNMESH_SANDBOX_DIR",
)


def nap_plugin(directory: Path) -> Path:
    (directory / "nap" / "plugin").mkdir(parents=True)
    (directory / "nap" / "plugin" / "__init__.py").write_text("")
    (directory / "nap" / "plugin" / "nap.py").write_text(NAP)
    (directory / "nap" / "config.yaml").write_text(
        "code: nap\nname: Nap\nversion: 1.0.0\ncategory: export\ndata_types: [image]\n"
        "actions:\n  nap:\n    entrypoint: plugin.nap.Nap\n    method: job\n"
    )
    return directory


def child_pid(parent: int, module: str) -> int:
    """The pid of `parent`'s child running `python -m <module>` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and module.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs {module}")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_runmesh_dev_restarts_a_killed_worker_and_gateway_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    stderr_path = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env["RUNMESH_HOME"] = str(tmp_path / "home")
    env["RUNMESH_GATEWAY_PORT"] = "0"
    env["RUNMESH_PLUGIN_PATH"] = str(nap_plugin(tmp_path / "plugins"))
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "runmesh.cli", "dev", "--no-demo"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )

    def log() -> str:
        return stderr_path.read_text(errors="replace")

    try:
        assert process.stdout is not None
        banner = ""
        async with asyncio.timeout(180):
            while "Press Ctrl-C to stop" not in banner:
                line = await process.stdout.readline()
                assert line, banner + log()
                banner += line.decode()
        url = re.search(r"Gateway:\s+(\S+)", banner)
        token = re.search(r"Token:\s+(\S+)", banner)
        assert url and token, banner
        async with httpx.AsyncClient(
            base_url=url[1], headers={"Authorization": f"Bearer {token[1]}"}, timeout=10
        ) as api:

            async def run(run_id: str, **expected: Any) -> dict[str, Any] | None:
                with contextlib.suppress(httpx.TransportError):
                    response = await api.get(f"/v1/runs/{run_id}")
                    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
                    if body and all(body[k] == v for k, v in expected.items()):
                        return body
                return None

            async def submit(seconds: float) -> str:
                async def accepted() -> str | None:
                    response = await api.post(
                        "/v1/runs",
                        json={
                            "category": "export",
                            "plugin": "nap",
                            "action": "nap",
                            "params": {"seconds": seconds},
                        },
                    )
                    return str(response.json()["id"]) if response.status_code == 202 else None

                run_id: str = await eventually(accepted, timeout=60, message="nap not accepted")
                return run_id

            # A run is under way on the export worker when the worker is killed.
            first = await submit(8.0)
            await eventually(lambda: run(first, state="running", attempt=1), timeout=60)
            worker = child_pid(process.pid, "runmesh.export")
            os.kill(worker, signal.SIGKILL)
            await eventually(
                lambda: f"export (pid {worker}) exited with signal SIGKILL; restarting it" in log(),
                timeout=30,
                message="no restart logged",
            )
            await eventually(lambda: "export restarted (pid" in log(), timeout=120)
            # The restarted worker takes the run over as attempt 2 and finishes it.
            done = await eventually(
                lambda: run(first, state="succeeded"), timeout=180, message=log()[-3000:]
            )
            assert (done["attempt"], done["retry_reason"]) == (2, "worker lost")
            second = await submit(0.1)
            ok = await eventually(lambda: run(second, state="succeeded"), timeout=120)
            assert (ok["attempt"], ok["retry_reason"]) == (1, None)

            # The gateway too: killed, restarted on the same port, answering again.
            gateway = child_pid(process.pid, "runmesh.gateway")
            os.kill(gateway, signal.SIGKILL)
            await eventually(
                lambda: f"gateway (pid {gateway}) exited with signal SIGKILL" in log(),
                timeout=30,
            )
            await eventually(lambda: "gateway restarted (pid" in log(), timeout=120)
            # (the client's old connection died with the old gateway: retried)
            await eventually(lambda: run(second, state="succeeded"), timeout=30)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            await process.communicate()
        assert process.returncode == 0, log()
        assert "not restarting" not in log()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
