"""What a worker's runs take of it (`resources`, docs/operations.md "Resources and exclusive
runs"): GPUs and memory out of what the worker declares, or the whole worker (`lock_all`).

Every attempt passes the gate. A run that asks for nothing starts at once unless a run that
needs the worker alone waits or runs. A run that asks for GPUs or memory starts once they are
free, in the order such runs arrived; a `lock_all` run once nothing else runs. From the
moment a run waits, the worker takes no more requests (`on_hold`), so those go to workers
with room, and a stream of small runs cannot starve a large one. The amounts are what runs
declare, not what they are measured to use. A run stopped while it waits (cancelled, timed
out, the worker stopping) leaves the line at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from runmesh.core.errors import ConfigurationError
from runmesh.core.run_policy import Resources
from runmesh.core.settings_parts import WorkerSettings
from runmesh.execution import StopSignal


@dataclass(slots=True, frozen=True)
class Capacity:
    """What a worker offers its runs: GPUs and memory (MiB) at once."""

    gpus: int
    memory_mb: int
    gpu_devices: tuple[str, ...] = ()
    """The GPUs' names for CUDA_VISIBLE_DEVICES; empty: `0` to `gpus - 1`."""

    @property
    def devices(self) -> tuple[str, ...]:
        """The name of each GPU, as a job's CUDA_VISIBLE_DEVICES lists it."""
        return self.gpu_devices or tuple(str(index) for index in range(self.gpus))


class CapacityError(ConfigurationError):
    """A worker's GPU settings contradict each other."""


def worker_capacity(settings: WorkerSettings) -> Capacity:
    """What a worker offers: its settings, memory defaulting to the machine's."""
    memory_mb = settings.worker_memory_mb
    if memory_mb is None:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    devices = tuple(settings.worker_gpu_devices)
    if devices and settings.worker_gpus not in (0, len(devices)):
        raise CapacityError(
            f"RUNMESH_WORKER_GPUS is {settings.worker_gpus} but RUNMESH_WORKER_GPU_DEVICES names "
            f"{len(devices)}: set one, or both alike"
        )
    return Capacity(
        gpus=len(devices) or settings.worker_gpus, memory_mb=memory_mb, gpu_devices=devices
    )


def lacking(need: Resources | None, capacity: Capacity) -> str | None:
    """Why a run asking for `need` can never run on a worker of `capacity`, or None."""
    if need is None:
        return None
    if need.gpus > capacity.gpus:
        return (
            f"the run needs {need.gpus} GPUs; this worker has {capacity.gpus} (RUNMESH_WORKER_GPUS)"
        )
    if need.memory_mb > capacity.memory_mb:
        return (
            f"the run needs {need.memory_mb} MiB of memory; this worker offers "
            f"{capacity.memory_mb} (RUNMESH_WORKER_MEMORY_MB)"
        )
    return None


class ResourceGate:
    """Hands out a worker's GPUs, memory and exclusive use to its runs (see the module).
    `on_hold(True)` is called as the first run begins to wait, `on_hold(False)` once no run
    waits and none runs alone."""

    def __init__(
        self, capacity: Capacity, on_hold: Callable[[bool], None] = lambda held: None
    ) -> None:
        self._capacity = capacity
        self._changed = asyncio.Condition()
        self._running = 0
        self._memory_mb = 0
        self._alone = False
        self._free_devices = list(capacity.devices)
        self._waiting: list[object] = []  # the runs waiting for room, first come first
        self._on_hold = on_hold
        self._was_held = False
        self._pokes: set[asyncio.Task[None]] = set()

    @property
    def capacity(self) -> Capacity:
        """What the worker offers its runs."""
        return self._capacity

    @property
    def held(self) -> bool:
        """Whether a run waits for room or runs alone: the worker takes nothing else."""
        return self._alone or bool(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(
        self, need: Resources | None, stop: StopSignal
    ) -> AsyncIterator[tuple[str, ...] | None]:
        """Wait for room for `need` and yield the GPUs it was given (empty when it asked for
        none; a `lock_all` run gets them all); yield None, without a turn, if `stop` is
        requested first. What it took is given back on leaving."""
        stop.on_request(self._poke)
        need = need or Resources()
        devices = await self._enter(need, stop)
        try:
            yield devices
        finally:
            if devices is not None:
                async with self._changed:
                    self._running -= 1
                    self._memory_mb -= need.memory_mb
                    if not need.lock_all:
                        self._free_devices.extend(devices)
                    self._alone = False
                    self._tell()

    async def _enter(self, need: Resources, stop: StopSignal) -> tuple[str, ...] | None:
        asks = need.lock_all or need.gpus > 0 or need.memory_mb > 0
        async with self._changed:
            if not asks and not self.held:  # the common case: nothing asked, nothing waits
                self._running += 1
                return ()
            ticket = object()
            self._waiting.append(ticket)
            self._tell()
            try:
                await self._changed.wait_for(
                    lambda: stop.requested or (self._waiting[0] is ticket and self._fits(need))
                )
            finally:
                self._waiting.remove(ticket)
                self._tell()
            if stop.requested:
                return None
            self._running += 1
            self._memory_mb += need.memory_mb
            self._alone = need.lock_all
            self._tell()
            if need.lock_all:  # alone on the worker: every GPU is its own
                return self._capacity.devices
            devices = self._free_devices[: need.gpus]
            del self._free_devices[: need.gpus]
            order = self._capacity.devices
            return tuple(sorted(devices, key=order.index))  # in the worker's order

    def _fits(self, need: Resources) -> bool:
        if self._alone:
            return False
        if need.lock_all:
            return self._running == 0
        return (
            need.gpus <= len(self._free_devices)
            and self._memory_mb + need.memory_mb <= self._capacity.memory_mb
        )

    def _tell(self) -> None:
        """Wake the waiters, and tell the consumer when the worker's hold changed (call with
        the condition's lock held)."""
        self._changed.notify_all()
        if self.held != self._was_held:
            self._was_held = self.held
            self._on_hold(self._was_held)

    def _poke(self) -> None:
        """A waiting run was stopped: let the waiters look again."""

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        task = asyncio.get_running_loop().create_task(notify())
        self._pokes.add(task)
        task.add_done_callback(self._pokes.discard)
