"""`runmesh dev`'s supervision on plain processes: a dead service is started again, with a
log line, and one that keeps dying is left down after a few restarts a minute."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from runmesh.cli.services import ServiceSpec
from runmesh.cli.supervision import RestartPolicy, Supervision
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.sandbox.processes import ChildProcess

FAST = RestartPolicy(max_per_minute=3, first_delay_s=0.01, max_delay_s=0.05)


async def start(spec: ServiceSpec, log_dir: Path) -> ChildProcess:
    """Start `spec` without waiting for a ready marker (these processes print none)."""
    child = ChildProcess(spec.name, log_dir / f"{spec.name}.log")
    await child.spawn(spec.argv)
    return child


def spec(name: str, code: str) -> ServiceSpec:
    return ServiceSpec(name, (sys.executable, "-c", code), Settings())


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runmesh.dev"]


async def test_a_killed_service_is_restarted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runmesh.dev")
    sleeper = spec("worker", "import time; time.sleep(300)")
    supervision = Supervision(tmp_path, policy=FAST, start=start)
    try:
        first = await start(sleeper, tmp_path)
        supervision.add(sleeper, first)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        await eventually(
            lambda: any("restarted" in m for m in messages(caplog)), timeout=10, message="restart"
        )
        again = supervision.child("worker")
        assert again is not None and again.running and again.pid != first.pid
        said = messages(caplog)
        assert f"worker (pid {first.pid}) exited with signal SIGKILL; restarting it" in said[0]
    finally:
        await supervision.aclose()
    assert again.returncode is not None  # stopped with the rest, not restarted


async def test_a_service_that_keeps_dying_is_left_down_after_a_few_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runmesh.dev")
    crasher = spec("gateway", "raise SystemExit(3)")
    supervision = Supervision(tmp_path, policy=FAST, start=start)
    try:
        supervision.add(crasher, await start(crasher, tmp_path))
        await eventually(lambda: any("not restarting" in m for m in messages(caplog)), timeout=20)
    finally:
        await supervision.aclose()
    said = messages(caplog)
    assert sum("restarting it in" in m for m in said) == 3
    assert "exited with status 3" in said[-1]
    assert "restarted 3 times within 60s" in said[-1]
    assert supervision.child("gateway") is None
