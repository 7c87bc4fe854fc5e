"""A pipeline survives its processes dying: a worker killed (SIGKILL) while it runs a step,
and the gateway that drives the pipeline stopped meanwhile. The step is redone by another
worker as attempt 2, the pipeline completes, and no step is started more than its attempts."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable

import pytest

from runmesh.core.settings import Settings

from .conftest import GatewayHandle, RunClient, WorkerProcess
from .test_gateway_api import api, wait_for_plugins
from .test_pipelines import ended, start, step

pytestmark = pytest.mark.slow


async def test_a_worker_killed_and_the_gateway_stopped_mid_pipeline(
    settings: Settings,
    gateway: GatewayHandle,
    worker_process: Callable[[], WorkerProcess],
) -> None:
    events = RunClient(settings)
    await events.start()
    first, second = worker_process(), worker_process()
    try:
        await asyncio.gather(first.wait_ready(), second.wait_ready())
        async with api(gateway, f"faults-{uuid.uuid4().hex[:8]}") as http:
            await wait_for_plugins(http)
            started = await start(
                http,
                {
                    "one": step("sleep", {"seconds": 3, "steps": 30}),
                    "two": step(
                        "echo", {"name": "${{ steps.one.result.slept }}s", "count": 1}, "one"
                    ),
                    "three": step("noop", {}, "two"),
                },
            )
            runs = {s["step"]: uuid.UUID(s["run_id"]) for s in started["steps"]}
            began = await events.wait_event(runs["one"], "run.started")
            victim = first if f":{first.pid}:" in began.worker else second
            victim.signal(signal.SIGKILL)
            await gateway.stop()  # the pipeline's driver goes too while step one is redone
            terminal = await events.wait_terminal(runs["one"], timeout=120)
            assert terminal.type == "run.succeeded" and terminal.attempt == 2
            await gateway.start()

            pipeline = await ended(http, started["run"]["id"], timeout=120)

        assert pipeline["run"]["state"] == "succeeded", pipeline
        attempts = {
            name: [e.attempt for e in events.events[run_id] if e.type == "run.started"]
            for name, run_id in runs.items()
        }
        assert attempts == {"one": [1, 2], "two": [1], "three": [1]}
        for run_id in runs.values():
            assert len(events.terminal(run_id)) == 1
    finally:
        await events.stop()
