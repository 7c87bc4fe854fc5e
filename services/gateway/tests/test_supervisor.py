"""The gateway's loop supervisor: restarts back off while a loop keeps failing, and start
again from the first delay once it ran healthily (a fake clock and sleep: no waiting)."""

from __future__ import annotations

import asyncio

import pytest

from runmesh.gateway.supervisor import HEALTHY_S, supervise


async def test_backoff_doubles_while_failing_and_resets_after_a_healthy_run() -> None:
    now = 0.0
    # How long each run of the loop lasts before it fails: three quick failures, a healthy
    # stretch, then quick failures again.
    durations = [1.0, 1.0, 1.0, HEALTHY_S + 5, 1.0, 1.0]
    delays: list[float] = []

    def clock() -> float:
        return now

    async def run() -> None:
        nonlocal now
        if not durations:
            raise asyncio.CancelledError  # the gateway stopping
        now += durations.pop(0)
        raise ConnectionError("kafka away")

    async def sleep(seconds: float) -> None:
        nonlocal now
        delays.append(seconds)
        now += seconds

    with pytest.raises(asyncio.CancelledError):
        await supervise("loop", run, clock=clock, sleep=sleep)
    assert delays == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
