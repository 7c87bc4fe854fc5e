"""Runs that need their worker alone (`resources.lock_all`, docs/operations.md "Exclusive
runs"): a gate every attempt passes, shared by ordinary runs, held alone by an exclusive one.

An exclusive run waits until the runs under way finish; from the moment it waits, no other
run starts on the worker (ordinary runs delivered meanwhile wait behind it, and the consumer
takes no more requests), so a stream of short runs cannot starve it. A run stopped while it
waits its turn (cancelled, timed out, the worker stopping) leaves the line at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from runmesh.execution import StopSignal


class ExclusiveGate:
    """A readers-writer gate with the writer first. `on_hold(True)` is called as the first
    exclusive run begins to wait, `on_hold(False)` once the last one is done."""

    def __init__(self, on_hold: Callable[[bool], None] = lambda held: None) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0
        self._on_hold = on_hold
        self._pokes: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> bool:
        """Whether an exclusive run runs or waits: the worker takes nothing else."""
        return self._exclusive or self._waiting > 0

    @contextlib.asynccontextmanager
    async def turn(self, *, exclusive: bool, stop: StopSignal) -> AsyncIterator[bool]:
        """Wait for the run's turn — alone if `exclusive`, else beside other ordinary runs
        but never an exclusive one — and yield True; yield False, without a turn, if `stop`
        is requested first."""
        stop.on_request(self._poke)
        entered = await (self._enter_alone(stop) if exclusive else self._enter_shared(stop))
        try:
            yield entered
        finally:
            if entered:
                async with self._changed:
                    if exclusive:
                        self._exclusive = False
                        self._held_changed()
                    else:
                        self._shared -= 1
                    self._changed.notify_all()

    async def _enter_shared(self, stop: StopSignal) -> bool:
        async with self._changed:
            await self._changed.wait_for(lambda: stop.requested or not self.held)
            if stop.requested:
                return False
            self._shared += 1
            return True

    async def _enter_alone(self, stop: StopSignal) -> bool:
        async with self._changed:
            self._waiting += 1
            if self._waiting == 1 and not self._exclusive:
                self._on_hold(True)
            try:
                await self._changed.wait_for(
                    lambda: stop.requested or (not self._exclusive and self._shared == 0)
                )
            except BaseException:  # cancelled (the condition's lock is held again here)
                self._waiting -= 1
                self._held_changed()
                self._changed.notify_all()
                raise
            self._waiting -= 1
            if stop.requested:
                self._held_changed()
                self._changed.notify_all()
                return False
            self._exclusive = True
            return True

    def _held_changed(self) -> None:
        """Tell the consumer once nothing holds the worker any more."""
        if not self.held:
            self._on_hold(False)

    def _poke(self) -> None:
        """A waiting run was stopped: let the waiters look again."""

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        task = asyncio.get_running_loop().create_task(notify())
        self._pokes.add(task)
        task.add_done_callback(self._pokes.discard)
