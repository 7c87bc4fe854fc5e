"""`runmesh plugin run`: a plugin directory's action run in-process (--debug) or on the mesh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runmesh.cli.__main__ import main
from runmesh.cli.services import demo_plugin_dir
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually

CONFIG = """\
code: sample
name: Sample
version: 0.1.0
category: export
actions:
  task:
    entrypoint: plugin.actions.Work
    method: task
  boom:
    entrypoint: plugin.actions.Boom
  wait:
    entrypoint: plugin.actions.Wait
  stubborn:
    entrypoint: plugin.actions.Stubborn
"""

ACTIONS = """\
import asyncio
import time

from pydantic import BaseModel, Field

from runmesh.plugins import Action


class WorkParams(BaseModel):
    rows: int = Field(ge=1)
    name: str = "out"


class Work(Action):
    params_model = WorkParams
    progress_categories = {"read": "Reading", "write": "Writing"}
    metrics_categories = {"rows": "Row counts"}
    log_messages = {"WROTE": {"message": "wrote {} rows", "level": "success"}}

    def start(self):
        rows = self.params.rows
        self.run.log_message("starting")
        for row in range(1, rows + 1):
            self.run.set_progress(row, rows, category="read")
        self.run.set_progress(rows, rows, category="write")
        self.run.set_metrics({"rows": rows}, category="rows", step=1)
        self.run.log_artifact("out.csv", "s3://bucket/out.csv", size=12, media_type="text/csv")
        self.run.log_message_with_code("WROTE", rows)
        return {"rows": rows, "name": self.params.name}


class Boom(Action):
    async def start(self):
        await asyncio.sleep(0)
        raise ValueError("no disk left on /data")


class Wait(Action):
    def start(self):
        self.run.log_message("waiting")
        for _ in range(600):
            self.run.check_cancelled()
            time.sleep(0.05)
        return {}


class Stubborn(Action):
    def start(self):
        self.run.log_message("ignoring cancel")
        time.sleep(60)
        return {}
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small plugin in a directory of the test's own; no `runmesh dev` is found (no dev.json)."""
    monkeypatch.setenv("RUNMESH_HOME", str(tmp_path / "home"))
    directory = tmp_path / "sample"
    (directory / "plugin").mkdir(parents=True)
    (directory / "config.yaml").write_text(CONFIG)
    (directory / "plugin" / "__init__.py").write_text("")
    (directory / "plugin" / "actions.py").write_text(ACTIONS)
    return directory


def debug_run(plugin_dir: Path, action: str, params: str) -> int:
    return main(["plugin", "run", action, params, "--path", str(plugin_dir), "--debug"])


def test_debug_runs_the_action_here_and_prints_its_result(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debug_run(plugin_dir, "task", '{"rows": 5, "name": "x"}') == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"rows": 5, "name": "x"}
    err = captured.err.splitlines()
    assert "running sample@0.1.0 task in this process (--debug: no Kafka)" in err
    assert "[info] starting" in err
    assert "[read] 5/5" in err and "[write] 5/5" in err
    assert "[metric rows] rows=5 (step 1)" in err
    assert "[artifact] out.csv: s3://bucket/out.csv (12 bytes, text/csv)" in err
    assert "[success WROTE] wrote 5 rows" in err


def test_params_can_come_from_a_file(
    plugin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.json"
    params.write_text('{"rows": 2}')
    assert debug_run(plugin_dir, "task", f"@{params}") == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 2, "name": "out"}


def test_an_action_that_raises_fails_with_its_error_and_traceback(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debug_run(plugin_dir, "boom", "{}") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" in captured.err  # --debug shows where it failed
    assert captured.err.splitlines()[-1] == "run failed: ValueError: no disk left on /data"


def test_invalid_params_name_each_field_on_its_own_line(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debug_run(plugin_dir, "task", '{"rows": 0, "name": 3}') == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "runmesh: invalid params for sample@0.1.0 task:",
        "  rows: Input should be greater than or equal to 1",
        "  name: Input should be a valid string",
    ]


def test_an_unknown_action_names_the_known_ones(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debug_run(plugin_dir, "tsak", "{}") == 1
    err = capsys.readouterr().err
    assert "no action 'tsak'" in err and "boom, stubborn, task, wait" in err, err
    assert "Traceback" not in err


def test_params_that_are_not_a_json_object_are_refused(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debug_run(plugin_dir, "task", "[1]") == 1
    assert capsys.readouterr().err.strip() == "runmesh: PARAMS must be a JSON object"


def test_without_debug_an_unknown_action_fails_before_submitting(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugin", "run", "tsak", "{}", "--path", str(plugin_dir)]) == 1
    err = capsys.readouterr().err
    assert "config.yaml has no action 'tsak'; its actions: boom, stubborn, task, wait" in err


async def start_debug_run(plugin_dir: Path, action: str) -> asyncio.subprocess.Process:
    """`runmesh plugin run ACTION {} --debug` as a user runs it, so it can get Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env["RUNMESH_HOME"] = str(plugin_dir.parent / "home")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "runmesh.cli", "plugin", "run", action, "{}", "--path", str(plugin_dir)),
        "--debug",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> None:
    async with asyncio.timeout(30):
        while not seen or text not in seen[-1]:
            line = await stream.readline()
            assert line, f"no {text!r} in: {''.join(seen)}"
            seen.append(line.decode())


@pytest.mark.slow
async def test_ctrl_c_cancels_the_run(plugin_dir: Path) -> None:
    process = await start_debug_run(plugin_dir, "wait")
    assert process.stderr is not None
    seen: list[str] = []
    try:
        await read_until(process.stderr, "[info] waiting", seen)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    text = "".join(seen) + err.decode()
    assert process.returncode == 2, text
    assert "run was cancelled: interrupted with Ctrl-C" in text


@pytest.mark.slow
async def test_a_second_ctrl_c_quits_an_action_that_ignores_the_first(plugin_dir: Path) -> None:
    process = await start_debug_run(plugin_dir, "stubborn")
    assert process.stderr is not None
    seen: list[str] = []
    try:
        await read_until(process.stderr, "[info] ignoring cancel", seen)
        process.send_signal(signal.SIGINT)
        await read_until(process.stderr, "Ctrl-C again", seen)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 130, "".join(seen) + err.decode()


@contextlib.asynccontextmanager
async def serving_gateway(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """The gateway over real HTTP on a free port, and a token of the default tenant."""
    import uvicorn

    from runmesh.gateway.app import create_app
    from runmesh.gateway.tokens import create_token
    from runmesh.sandbox.processes import free_port

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=60, message="gateway")
        if task.done():
            task.result()  # raises the start-up error
        yield f"http://127.0.0.1:{port}", await create_token(app.state.deps.pool, "default")
    finally:
        server.should_exit = True
        async with asyncio.timeout(60):
            await task


@contextlib.asynccontextmanager
async def demo_worker(settings: Settings) -> AsyncIterator[None]:
    """The `runmesh dev` demo worker: it knows the plugin shipped in `demo_plugin_dir()`."""
    from runmesh.worker import Worker, build_registry

    worker = Worker("demo", build_registry(settings, [demo_plugin_dir()]), settings, service="demo")
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(60):
            await worker.ready.wait()
        yield
    finally:
        worker.request_stop()
        async with asyncio.timeout(60):
            await task


@pytest.mark.slow
async def test_without_debug_the_run_is_submitted_and_followed(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNMESH_HOME", str(tmp_path))  # no dev.json: the options say where
    async with serving_gateway(settings) as (url, token), demo_worker(settings):
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:

            async def announced() -> bool:
                return (await http.get("/v1/plugins/hello")).status_code == 200

            await eventually(announced, timeout=60, message="the demo plugin never announced")
            root = ["--gateway-url", url, "--token", token, "plugin", "run", "count"]
            params = '{"to": 3, "delay_s": 0}'
            # main() runs its own event loop: on a thread, while this loop serves the gateway.
            code = await asyncio.to_thread(main, [*root, params, "--path", str(demo_plugin_dir())])
            out = capsys.readouterr().out
            assert code == 0, out
            assert " succeeded: " in out and "'counted': 3" in out, out
            run = (await http.get(f"/v1/runs/{out.split()[1]}")).json()
            assert (run["category"], run["plugin"], run["plugin_version"]) == (
                "demo",
                "hello@1.0.0",
                "1.0.0",
            )

            args = [*root, params, "--path", str(demo_plugin_dir()), "--no-wait"]
            assert await asyncio.to_thread(main, args) == 0
            assert capsys.readouterr().out.strip().endswith(" queued")
