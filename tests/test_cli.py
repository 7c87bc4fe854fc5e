"""The `runmesh` CLI against a real gateway, worker, broker and database."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from runmesh.core.settings import Settings
from runmesh.sandbox.processes import free_port

from .conftest import GatewayHandle, WorkerFactory


async def runmesh(
    *args: str, gateway: GatewayHandle, token: str, home: Path, timeout: float = 120
) -> tuple[int, str, str]:
    """Run the CLI as a user does (a subprocess; the gateway keeps serving meanwhile)."""
    env = {"RUNMESH_GATEWAY_URL": gateway.url, "RUNMESH_TOKEN": token, "RUNMESH_HOME": str(home)}
    return await run_cli(*args, env=env, timeout=timeout)


async def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI in a subprocess with no RUNMESH_* variable but those in `env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")} | env
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runmesh.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _wait_for_plugins(gateway: GatewayHandle, token: str, home: Path) -> None:
    import httpx

    from runmesh.core.testing import eventually

    async def listed() -> bool:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            page = await http.get("/v1/plugins", headers={"Authorization": f"Bearer {token}"})
            return page.status_code == 200 and "testkit" in page.text

    await eventually(listed, timeout=60, message="the worker's plugin never reached the gateway")


async def test_submit_wait_exits_0_on_success_and_non_zero_on_failure(
    gateway: GatewayHandle, worker: WorkerFactory, tmp_path: Path
) -> None:
    token = await gateway.token()
    async with worker():
        await _wait_for_plugins(gateway, token, tmp_path)
        code, out, err = await runmesh(
            "submit",
            "test",
            "echo",
            "--params",
            '{"name": "ada", "count": 40}',
            "--wait",
            gateway=gateway,
            token=token,
            home=tmp_path,
        )
        assert code == 0, out + err
        assert "succeeded" in out and "hello ada" in out, out
        code, out, err = await runmesh(
            "submit",
            "test",
            "fail",
            "--params",
            '{"message": "no disk"}',
            "--wait",
            gateway=gateway,
            token=token,
            home=tmp_path,
        )
        assert code == 1, out + err
        assert "failed: ValueError: no disk" in out, out


async def test_submit_with_an_idempotency_key_makes_one_run(
    gateway: GatewayHandle, worker: WorkerFactory, tmp_path: Path
) -> None:
    token = await gateway.token()
    args = (
        *("submit", "test", "echo", "-p", '{"name": "once", "count": 1}'),
        *("--max-attempts", "2", "--retry-backoff", "0.5", "--priority", "8", "--lock-all"),
    )
    async with worker():
        await _wait_for_plugins(gateway, token, tmp_path)
        answers = [
            await runmesh(
                *args, "--idempotency-key", "nightly-1", gateway=gateway, token=token, home=tmp_path
            )
            for _ in range(2)
        ]
        other = await runmesh(
            *args, "--idempotency-key", "nightly-2", gateway=gateway, token=token, home=tmp_path
        )
    (code1, out1, err1), (code2, out2, _) = answers
    assert code1 == 0 and code2 == 0, err1
    run_id = out1.split()[1]
    assert out2.split()[1] == run_id  # the same run, answered again
    stored = await gateway.app.state.deps.pool.fetchrow(
        "SELECT max_attempts, retry_backoff_s, priority, resources FROM runs.runs WHERE id = $1",
        uuid.UUID(run_id),
    )
    # --max-attempts, --retry-backoff, --priority, --lock-all
    assert tuple(stored) == (2, 0.5, 8, {"lock_all": True})
    assert other[0] == 0 and other[1].split()[1] != run_id


async def test_submit_reports_invalid_params_in_one_readable_error(
    gateway: GatewayHandle, worker: WorkerFactory, tmp_path: Path
) -> None:
    token = await gateway.token()
    async with worker():
        await _wait_for_plugins(gateway, token, tmp_path)
        code, _out, err = await runmesh(
            "submit",
            "test",
            "echo",
            "--params",
            '{"count": 0}',
            gateway=gateway,
            token=token,
            home=tmp_path,
        )
    assert code == 1
    assert "422" in err and "name" in err and "count" in err, err
    assert "Traceback" not in err


async def test_runs_commands_list_show_logs_cancel_and_rerun(
    gateway: GatewayHandle, worker: WorkerFactory, tmp_path: Path
) -> None:
    token = await gateway.token()
    async with worker():
        await _wait_for_plugins(gateway, token, tmp_path)
        code, out, _ = await runmesh(
            "submit",
            "test",
            "echo",
            "--params",
            '{"name": "bo", "count": 3}',
            "--wait",
            gateway=gateway,
            token=token,
            home=tmp_path,
        )
        assert code == 0
        run_id = out.split()[1]
        code, out, err = await runmesh("runs", "ls", gateway=gateway, token=token, home=tmp_path)
        assert code == 0 and run_id[:8] in out, out + err
        code, out, err = await runmesh(
            "runs", "ls", "--name", "BO", gateway=gateway, token=token, home=tmp_path
        )  # found by its name, any case; the name is a column
        assert code == 0 and run_id[:8] in out and "│ bo " in out, out + err
        code, out, err = await runmesh(
            "runs", "ls", "--name", "nobody", gateway=gateway, token=token, home=tmp_path
        )
        assert code == 0 and run_id[:8] not in out, out + err
        code, out, err = await runmesh(
            "runs", "show", run_id[:8], gateway=gateway, token=token, home=tmp_path
        )  # the short id `runs ls` shows
        assert code == 0 and '"state": "succeeded"' in out and run_id in out, out + err
        code, out, err = await runmesh(
            "runs", "logs", run_id, gateway=gateway, token=token, home=tmp_path
        )
        assert code == 0 and "hello bo" in out and "echoed 3 times" in out, out + err
        code, out, err = await runmesh(
            "runs", "rerun", run_id, "--wait", gateway=gateway, token=token, home=tmp_path
        )
        assert code == 0 and f"(rerun of {run_id})" in out, out + err
        code, out, err = await runmesh(
            "submit",
            "test",
            "sleep",
            "--params",
            '{"seconds": 30, "steps": 300}',
            gateway=gateway,
            token=token,
            home=tmp_path,
        )
        sleeping = out.split()[1]
        code, out, err = await runmesh(
            "runs", "cancel", sleeping, gateway=gateway, token=token, home=tmp_path
        )
        assert code == 0, out + err
        code, out, err = await runmesh(
            "runs", "watch", sleeping, gateway=gateway, token=token, home=tmp_path
        )
        assert code == 2, out + err  # cancelled


async def test_root_options_give_the_gateway_and_token_and_win_over_the_environment(
    gateway: GatewayHandle, worker: WorkerFactory, tmp_path: Path
) -> None:
    token = await gateway.token()
    options = ["--gateway-url", gateway.url, "--token", token]
    no_gateway = {"RUNMESH_HOME": str(tmp_path)}  # no RUNMESH_GATEWAY_URL/TOKEN, no dev.json
    async with worker():
        await _wait_for_plugins(gateway, token, tmp_path)
        code, out, err = await run_cli(
            *options,
            "submit",
            "test",
            "echo",
            "--params",
            '{"name": "cy", "count": 2}',
            "--wait",
            env=no_gateway,
        )
        assert code == 0 and "succeeded" in out, out + err
        run_id = out.split()[1]
    code, out, err = await run_cli(*options, "runs", "show", run_id, env=no_gateway)
    assert code == 0 and '"state": "succeeded"' in out, out + err

    # The options win over variables that point elsewhere (which alone would fail).
    elsewhere = no_gateway | {
        "RUNMESH_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "RUNMESH_TOKEN": "rmt_not-a-token",
    }
    code, out, err = await run_cli("runs", "show", run_id, env=elsewhere)
    assert code == 1, out + err
    code, out, err = await run_cli(*options, "runs", "show", run_id, env=elsewhere)
    assert code == 0 and '"state": "succeeded"' in out, out + err
    code, out, err = await run_cli(
        "--gateway-url", gateway.url, "runs", "show", run_id, env=elsewhere
    )
    assert code == 1 and "401" in err, out + err  # the token still came from RUNMESH_TOKEN


async def test_token_create_prints_the_token_last(settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env.update(settings.to_env())
    env["RUNMESH_HOME"] = str(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runmesh.cli",
        "token",
        "create",
        "--tenant",
        "acme",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    token = out.decode().split()[-1]
    assert token.startswith("rmt_")

    from runmesh.core.db import create_pool
    from runmesh.gateway.tokens import TokenCache

    pool = await create_pool(settings.database)
    try:
        assert await TokenCache(pool).lookup(token) == "acme"
    finally:
        await pool.close()


@pytest.mark.parametrize("args", [["runs", "ls"], ["runs", "show", "x"]])
async def test_commands_without_a_gateway_say_how_to_get_one(
    args: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env["RUNMESH_HOME"] = str(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runmesh.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "runmesh dev" in err.decode() and "Traceback" not in err.decode()
