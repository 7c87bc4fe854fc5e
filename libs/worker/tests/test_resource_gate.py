"""The gate of a worker's resources: an exclusive run waits for the runs under way, runs
alone, and keeps later runs waiting until it is done; GPUs and memory are handed out up to
what the worker offers, first come first served; a run stopped while it waits leaves the
line; a run asking for more than the worker has is told so."""

from __future__ import annotations

import asyncio

import pytest

from runmesh.core.run_policy import Resources
from runmesh.core.settings import Settings
from runmesh.execution import StopSignal
from runmesh.worker.resource_gate import (
    Capacity,
    CapacityError,
    ResourceGate,
    lacking,
    worker_capacity,
)

ALONE = Resources(lock_all=True)
WORKER = Capacity(gpus=2, memory_mb=1000)


async def test_an_exclusive_run_waits_for_the_runs_under_way_and_runs_alone() -> None:
    holds: list[bool] = []
    gate = ResourceGate(WORKER, on_hold=holds.append)
    log: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def ordinary(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.turn(None, StopSignal()) as gpus:
            assert gpus == ()  # in, with no GPU
            log.append(f"{name} in")
            if wait is not None:
                first_in.set()
                await wait.wait()
            log.append(f"{name} out")

    async def alone() -> None:
        async with gate.turn(ALONE, StopSignal()) as gpus:
            assert gpus == ("0", "1")  # alone on the worker: every GPU is its own
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
    gate = ResourceGate(WORKER, on_hold=holds.append)
    busy = StopSignal()
    inside = asyncio.Event()
    done = asyncio.Event()

    async def ordinary() -> None:
        async with gate.turn(None, busy):
            inside.set()
            await done.wait()

    running = asyncio.create_task(ordinary())
    await inside.wait()
    stop = StopSignal()

    async def alone() -> tuple[str, ...] | None:
        async with gate.turn(ALONE, stop) as gpus:
            return gpus

    waiting = asyncio.create_task(alone())
    await asyncio.sleep(0.01)
    stop.request("cancel", "cancelled by user")
    assert await asyncio.wait_for(waiting, timeout=30) is None  # stopped: no turn
    assert holds == [True, False] and not gate.held  # the consumer takes runs again
    done.set()
    await running


async def test_gpus_and_memory_are_handed_out_up_to_what_the_worker_offers() -> None:
    gate = ResourceGate(WORKER)
    log: list[str] = []
    release = asyncio.Event()

    async def run(name: str, need: Resources) -> None:
        async with gate.turn(need, StopSignal()) as gpus:
            assert gpus is not None
            log.append(f"{name} in")
            await release.wait()
            log.append(f"{name} out")

    one_gpu = Resources(gpus=1, memory_mb=400)
    first = asyncio.create_task(run("a", one_gpu))
    second = asyncio.create_task(run("b", one_gpu))
    await asyncio.sleep(0.01)
    assert sorted(log) == ["a in", "b in"]  # 2 GPUs, 800 of 1000 MiB: both fit
    third = asyncio.create_task(run("c", Resources(memory_mb=300)))
    await asyncio.sleep(0.01)
    assert "c in" not in log and gate.held  # 300 more MiB do not fit: it waits
    release.set()
    await asyncio.gather(first, second, third)
    assert log[-2:] == ["c in", "c out"]
    assert not gate.held


def test_a_run_asking_for_more_than_the_worker_has_is_told_why() -> None:
    assert lacking(None, WORKER) is None
    assert lacking(Resources(gpus=2, memory_mb=1000), WORKER) is None
    assert lacking(Resources(gpus=3), WORKER) == (
        "the run needs 3 GPUs; this worker has 2 (RUNMESH_WORKER_GPUS)"
    )
    assert lacking(Resources(memory_mb=2000), WORKER) == (
        "the run needs 2000 MiB of memory; this worker offers 1000 (RUNMESH_WORKER_MEMORY_MB)"
    )


async def test_each_run_gets_gpus_of_its_own_and_gives_them_back() -> None:
    gate = ResourceGate(Capacity(gpus=3, memory_mb=1000, gpu_devices=("GPU-a", "GPU-b", "GPU-c")))
    given: dict[str, tuple[str, ...]] = {}
    inside = {name: asyncio.Event() for name in "abc"}
    release = {name: asyncio.Event() for name in "abc"}

    async def run(name: str, gpus: int) -> None:
        async with gate.turn(Resources(gpus=gpus), StopSignal()) as devices:
            assert devices is not None
            given[name] = devices
            inside[name].set()
            await release[name].wait()

    first = asyncio.create_task(run("a", 2))
    await inside["a"].wait()
    second = asyncio.create_task(run("b", 1))
    await inside["b"].wait()
    assert sorted(given["a"] + given["b"]) == ["GPU-a", "GPU-b", "GPU-c"]  # none shared
    third = asyncio.create_task(run("c", 2))
    await asyncio.sleep(0.01)
    assert "c" not in given  # one GPU free, two asked: it waits
    release["a"].set()
    await inside["c"].wait()
    assert set(given["c"]) == set(given["a"])  # what the first gave back
    release["b"].set()
    release["c"].set()
    await asyncio.gather(first, second, third)


def test_a_workers_gpus_are_named_by_its_devices_or_numbered() -> None:
    named = Settings(worker_gpu_devices="GPU-1f, GPU-2e").worker
    assert worker_capacity(named).devices == ("GPU-1f", "GPU-2e")
    assert worker_capacity(named).gpus == 2
    assert worker_capacity(Settings(worker_gpus=2).worker).devices == ("0", "1")
    contradicting = Settings(worker_gpus=3, worker_gpu_devices="0,1").worker
    with pytest.raises(CapacityError, match="RUNMESH_WORKER_GPUS is 3 but"):
        worker_capacity(contradicting)
    with pytest.raises(ValueError, match="not a GPU device id"):
        Settings(worker_gpu_devices="0,$(reboot)")
