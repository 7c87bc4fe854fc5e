"""`runmesh dev` as a user runs it: a subprocess that serves until Ctrl-C, then cleans up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from runmesh.cli.__main__ import main
from runmesh.core.testing import eventually

CONNECTION_VARIABLES = (
    "RUNMESH_KAFKA_BOOTSTRAP",
    "RUNMESH_DATABASE_URL",
    "RUNMESH_S3_ENDPOINT_URL",
    "RUNMESH_SANDBOX_DIR",
)
EXPORT = re.compile(r"export (RUNMESH_[A-Z0-9_]+)=(\S+)")


async def read_until_prompt(stdout: asyncio.StreamReader) -> tuple[list[str], dict[str, str]]:
    lines: list[str] = []
    while not lines or "Press Ctrl-C to stop" not in lines[-1]:
        line = await stdout.readline()
        if not line:
            break
        lines.append(line.decode())
    exported = {m[1]: m[2] for line in lines if (m := EXPORT.search(line))}
    return lines, exported


async def start_dev(stderr_path: Path, *args: str) -> asyncio.subprocess.Process:
    """`runmesh dev ARGS` as a user runs it, on its own sandbox (no RUNMESH_* servers)."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env["RUNMESH_HOME"] = str(stderr_path.parent / "home")
    env["RUNMESH_GATEWAY_PORT"] = "0"  # a free port: tests may run beside a real `runmesh dev`
    with stderr_path.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runmesh.cli",
            "dev",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )


async def port_closed(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


@pytest.mark.slow
async def test_dev_serves_kafka_and_postgres_until_sigint(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    process = await start_dev(stderr_path, "--no-demo")
    try:
        assert process.stdout is not None
        lines, exported = await asyncio.wait_for(read_until_prompt(process.stdout), 60)
        output = "".join(lines)
        assert "ephemeral" in output, output + stderr_path.read_text()
        assert "RUNMESH_KAFKA_BOOTSTRAP" in exported, output + stderr_path.read_text()

        bootstrap = exported["RUNMESH_KAFKA_BOOTSTRAP"]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert isinstance(await admin.list_topics(), list)
        finally:
            await admin.close()
        connection = await asyncpg.connect(exported["RUNMESH_DATABASE_URL"], timeout=10)
        try:
            assert await connection.fetchval("select 1") == 1
        finally:
            await connection.close(timeout=5)

        process.send_signal(signal.SIGINT)
        remaining, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, remaining.decode() + stderr_path.read_text()
        host, port = bootstrap.rsplit(":", 1)
        assert await port_closed(host, int(port))
        assert await eventually(
            lambda: "sandbox stopped" in stderr_path.read_text(),
            message="no 'sandbox stopped' in stderr",
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


@pytest.mark.slow
async def test_dev_runs_the_services_and_the_demo_to_success(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    process = await start_dev(stderr_path)
    try:
        assert process.stdout is not None
        lines, _ = await asyncio.wait_for(read_until_prompt(process.stdout), 120)
        output = "".join(lines)
        services = "gateway, upload, export, to_task, train, plugins-worker, demo-worker"
        assert services in output, output
        gateway_url = re.search(r"Gateway:\s+(\S+)", output)
        token = re.search(r"Token:\s+(\S+)", output)
        assert gateway_url and token, output
        info = json.loads((tmp_path / "home" / "dev.json").read_text())
        assert (info["gateway_url"], info["token"]) == (gateway_url[1], token[1])
        async with httpx.AsyncClient(base_url=gateway_url[1], timeout=10) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            runs = await http.get("/v1/runs", headers={"Authorization": f"Bearer {token[1]}"})
            assert runs.status_code == 200, runs.text
        demo: list[str] = []
        while not any(line.startswith("Dashboard: ") for line in demo):
            line = await asyncio.wait_for(process.stdout.readline(), 300)
            assert line, "".join(demo) + stderr_path.read_text()
            demo.append(line.decode())
        text = "".join(demo)
        # The whole chain ran as one pipeline, each step to success, followed live.
        assert "demo pipeline run " in text, text
        rows = [line for line in demo if line.startswith("│")]
        steps = ["upload", "annotate", "export_coco", "export_yolo", "train", "predict"]
        for step in steps:
            row = next((r for r in rows if r.startswith(f"│ {step} ")), None)
            assert row is not None and "succeeded" in row, text
        assert "36 units, 72 files" in text, text
        assert "36 tasks by the model" in text, text
        assert "100% 36/36" in text, text
        # Readable: no debug line per epoch unless `runmesh dev -v`, and a word that they exist.
        assert "[debug]" not in text and "debug log lines hidden: -v shows them" in text, text
        assert f"Dashboard: {gateway_url[1]}/" in text
        exports = tmp_path / "home" / "demo-data" / "exports"
        coco = [p for p in exports.iterdir() if p.name.endswith("-coco")]
        assert coco and (coco[0] / "annotations.json").is_file()
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr_path.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("dev", "gateway", "worker", "submit", "token", "runs"):
        assert command in out


def test_no_command_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "Usage: runmesh" in capsys.readouterr().out
