"""The `task` method: run an action in the worker process, cancellable at its safe points."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

from pydantic import BaseModel

from runmesh.core.errors import RunCancelledError
from runmesh.execution.outcome import Failed, Outcome, exception_outcome, result_outcome
from runmesh.execution.stop import StopSignal
from runmesh.execution.threads import run_in_thread
from runmesh.execution.watchdog import ActionInterrupted, LoopWatchdog, interrupt_thread
from runmesh.plugins.action import Action
from runmesh.plugins.run import Run

log = logging.getLogger(__name__)

INTERRUPT_WAIT_S = 1.0
"""How long an action interrupted after ignoring a stop has to unwind before it is left
behind (documented: a stop takes effect within RUNMESH_CANCEL_GRACE_S plus this)."""


async def execute_task(
    action_cls: type[Action],
    params: BaseModel,
    run: Run,
    cancel_flag: threading.Event,
    stop: StopSignal,
    *,
    grace_s: float,
    progress_interval_s: float,
    watchdog: LoopWatchdog | None = None,
) -> Outcome:
    """Run `action_cls(params, run).start()` until it returns or `stop` is requested.

    Sync `start()` runs on its own thread and stops cooperatively (`run.check_cancelled()`);
    one still running `grace_s` after a stop is interrupted in its thread (`ActionInterrupted`
    at its next Python instruction). Async `start()` is cancelled at its next `await`; with a
    `watchdog`, one that holds the event loop too long is interrupted and fails `LoopBlocked`.
    An action that still runs after all that (blocked in a C call) is left behind and the
    attempt ends with the stop's outcome.
    """
    try:
        action = action_cls(params, run)
    except Exception as exc:  # noqa: BLE001 -- a failing constructor is the action's error
        return exception_outcome(exc)
    work: asyncio.Future[Any]
    thread: threading.Thread | None = None
    if inspect.iscoroutinefunction(action.start):
        work = asyncio.ensure_future(action.start())
        if watchdog is not None:
            watchdog.guard(work, run.run_id)
    else:
        work, thread = run_in_thread(action.start, name=f"run-{run.run_id}")
    loop = asyncio.get_running_loop()
    # Plain futures and timer handles, not helper tasks: a run that returns at once should
    # cost little more than its action.
    give_up: asyncio.Future[None] = loop.create_future()

    def on_stop() -> None:
        if stop.kind == "shutdown":
            run.mark_shutdown()  # before the flag: the action must see why it is stopped
        cancel_flag.set()
        if isinstance(work, asyncio.Task):
            work.cancel()  # a thread can only be told through the flag
        loop.call_later(grace_s, _settle, give_up)

    stop.on_request(on_stop)
    flusher = _ProgressFlusher(run, loop, progress_interval_s)
    held_loop_s: float | None = None
    try:
        await asyncio.wait({work, give_up}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done() and thread is not None and thread.ident is not None:
            log.warning(
                "run %s: action ignored %s for %.1fs; interrupting it",
                run.run_id,
                stop.kind,
                grace_s,
            )
            interrupt_thread(thread.ident)
            await asyncio.wait({work}, timeout=INTERRUPT_WAIT_S)
        if not work.done():
            log.warning(
                "run %s: action still runs after %s; leaving it behind", run.run_id, stop.kind
            )
            return stop.outcome()
        if watchdog is not None and isinstance(work, asyncio.Task):
            held_loop_s = watchdog.release(work)
        if held_loop_s is not None and not stop.requested:
            if not work.cancelled():
                work.exception()  # retrieved: it is the interruption, reported below
            return Failed(
                "LoopBlocked",
                f"the action held the worker's event loop for {held_loop_s:.1f}s (limit "
                f"RUNMESH_LOOP_BLOCK_LIMIT_S={watchdog.limit_s if watchdog else 0:g}s) and was "
                "stopped: an async action must await; run blocking code with "
                "asyncio.to_thread, or declare the action `method: job`",
            )
        return _outcome(work, stop)
    finally:
        if watchdog is not None and isinstance(work, asyncio.Task):
            watchdog.release(work)
        flusher.close()
        run.flush_progress(force=True)


def _outcome(work: asyncio.Future[Any], stop: StopSignal) -> Outcome:
    if work.cancelled():
        return stop.outcome()
    exc = work.exception()
    if exc is None:
        return result_outcome(work.result())
    if stop.requested and isinstance(
        exc, RunCancelledError | asyncio.CancelledError | ActionInterrupted
    ):
        # The action stopped because we asked: report why we asked (a timeout is a failure).
        return stop.outcome()
    return exception_outcome(exc)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ProgressFlusher:
    """Sends progress held back by coalescing once it is due, on a loop timer."""

    def __init__(self, run: Run, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._run = run
        self._loop = loop
        self._interval = interval_s
        self._handle = loop.call_later(interval_s, self._tick)

    def _tick(self) -> None:
        self._run.flush_progress()
        self._handle = self._loop.call_later(self._interval, self._tick)

    def close(self) -> None:
        self._handle.cancel()
