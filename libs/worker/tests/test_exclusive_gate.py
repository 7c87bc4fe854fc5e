"""The gate of exclusive runs: an exclusive run waits for the runs under way, runs alone,
and keeps later runs waiting until it is done; a run stopped while it waits leaves the line."""

from __future__ import annotations

import asyncio

from runmesh.execution import StopSignal
from runmesh.worker.exclusive import ExclusiveGate


async def test_an_exclusive_run_waits_for_the_runs_under_way_and_runs_alone() -> None:
    holds: list[bool] = []
    gate = ExclusiveGate(on_hold=holds.append)
    log: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def ordinary(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.turn(exclusive=False, stop=StopSignal()) as entered:
            assert entered
            log.append(f"{name} in")
            if wait is not None:
                first_in.set()
                await wait.wait()
            log.append(f"{name} out")

    async def alone() -> None:
        async with gate.turn(exclusive=True, stop=StopSignal()) as entered:
            assert entered
            log.append("alone in")
            await asyncio.sleep(0)
            log.append("alone out")

    first = asyncio.create_task(ordinary("first", release_first))
    await first_in.wait()
    exclusive = asyncio.create_task(alone())
    await asyncio.sleep(0.01)
    assert gate.held and holds == [True]  # waiting: the consumer takes nothing more
    later = asyncio.create_task(ordinary("later"))
    await asyncio.sleep(0.01)
    assert log == ["first in"]  # neither the exclusive run nor the later one started
    release_first.set()
    await asyncio.gather(first, exclusive, later)
    assert log == ["first in", "first out", "alone in", "alone out", "later in", "later out"]
    assert holds == [True, False] and not gate.held


async def test_a_run_stopped_while_waiting_leaves_the_line() -> None:
    holds: list[bool] = []
    gate = ExclusiveGate(on_hold=holds.append)
    busy = StopSignal()
    inside = asyncio.Event()
    done = asyncio.Event()

    async def ordinary() -> None:
        async with gate.turn(exclusive=False, stop=busy):
            inside.set()
            await done.wait()

    running = asyncio.create_task(ordinary())
    await inside.wait()
    stop = StopSignal()

    async def alone() -> bool:
        async with gate.turn(exclusive=True, stop=stop) as entered:
            return entered

    waiting = asyncio.create_task(alone())
    await asyncio.sleep(0.01)
    stop.request("cancel", "cancelled by user")
    assert await asyncio.wait_for(waiting, timeout=30) is False
    assert holds == [True, False] and not gate.held  # the consumer takes runs again
    done.set()
    await running
