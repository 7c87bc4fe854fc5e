"""Stopping in-process action code that ignores cancellation or holds the event loop."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

log = logging.getLogger(__name__)


class ActionInterrupted(BaseException):
    """Raised inside an action's own code by the worker to stop it.

    A `BaseException`, as `asyncio.CancelledError` is, so that the action's
    `except Exception:` cannot swallow it.
    """


def interrupt_thread(thread_id: int) -> bool:
    """Raise `ActionInterrupted` in the thread `thread_id` at its next Python instruction.

    Code blocked inside a C call (a `time.sleep`, a socket read) sees it when the call
    returns. False if no such thread runs any more.
    """
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(ActionInterrupted)
    )
    return bool(done)


@dataclass(slots=True)
class _Guarded:
    run_id: uuid.UUID
    interrupted_after_s: float | None = None


class LoopWatchdog:
    """Watches one event loop from a thread of its own.

    The loop ticks a heartbeat; when it misses it for `limit_s` while an in-process action's
    task holds the loop (an `async def start` that never awaits, or blocks in a sync call),
    the watchdog raises `ActionInterrupted` in that action's code, so the run fails with
    `LoopBlocked` and every other run on the worker goes on. Anything else holding the loop
    is logged with its stack, once per stall. Its heartbeat is also what the worker's
    `/healthz` reads (`silent_for()`).
    """

    def __init__(self, *, limit_s: float, tick_s: float | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit_s = limit_s
        self._tick_s = tick_s if tick_s is not None else min(0.5, limit_s / 4)
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._guarded: dict[asyncio.Task[object], _Guarded] = {}
        self._stopped = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    @property
    def limit_s(self) -> float:
        """How long an action may hold the loop."""
        return self._limit_s

    def start(self) -> None:
        """Start beating on the running loop and watching it (once)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._heartbeat()
        self._thread.start()

    def silent_for(self) -> float:
        """Seconds since the loop last ticked (0 before `start()`); safe from any thread."""
        if self._loop is None:
            return 0.0
        return max(0.0, time.monotonic() - self._beat)

    def stop(self) -> None:
        """Stop watching; the heartbeat's timer is cancelled."""
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()

    def guard(self, task: asyncio.Task[object], run_id: uuid.UUID) -> None:
        """Let the watchdog interrupt `task` (an action's `start()`) when it holds the loop."""
        self._guarded[task] = _Guarded(run_id)

    def release(self, task: asyncio.Task[object]) -> float | None:
        """Stop guarding `task`; how long it held the loop if the watchdog interrupted it."""
        guarded = self._guarded.pop(task, None)
        return None if guarded is None else guarded.interrupted_after_s

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        if self._loop is not None and not self._stopped.is_set():
            self._handle = self._loop.call_later(self._tick_s, self._heartbeat)

    def _watch(self) -> None:
        reported = 0.0  # the beat of the stall already dealt with
        while not self._stopped.wait(self._tick_s):
            beat = self._beat
            stalled_s = time.monotonic() - beat
            if stalled_s < self._limit_s or beat == reported:
                continue
            reported = beat
            # Read from this thread while the loop's thread is stuck: a dict lookup, no lock.
            task = asyncio.current_task(self._loop) if self._loop is not None else None
            guarded = self._guarded.get(task) if task is not None else None
            if guarded is None or self._beat != beat:
                self._report(stalled_s)
                continue
            guarded.interrupted_after_s = stalled_s
            log.warning(
                "run %s: its action held the event loop for %.1fs; interrupting it",
                guarded.run_id,
                stalled_s,
            )
            interrupt_thread(self._loop_thread)

    def _report(self, stalled_s: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
        log.warning("the event loop has not run for %.1fs; it is at:\n%s", stalled_s, stack)
