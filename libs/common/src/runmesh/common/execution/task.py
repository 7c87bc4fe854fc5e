"""The `task` method: run an action in the worker process, cancellable at its safe points."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

from pydantic import BaseModel

from runmesh.common.errors import RunCancelledError
from runmesh.common.execution.outcome import Outcome, exception_outcome, result_outcome
from runmesh.common.execution.stop import StopSignal
from runmesh.common.execution.threads import run_in_thread
from runmesh.common.plugins.action import Action
from runmesh.common.plugins.run import Run

log = logging.getLogger(__name__)


async def execute_task(
    action_cls: type[Action],
    params: BaseModel,
    run: Run,
    cancel_flag: threading.Event,
    stop: StopSignal,
    *,
    grace_s: float,
    progress_interval_s: float,
) -> Outcome:
    """Run `action_cls(params, run).start()` until it returns or `stop` is requested.

    Sync `start()` runs on its own thread and stops cooperatively (`run.check_cancelled()`);
    async `start()` is also cancelled at its next `await`. An action still running `grace_s`
    after a stop is left behind (a thread cannot be killed: use `method: job` for code that
    does not check) and the attempt ends with the stop's outcome.
    """
    try:
        action = action_cls(params, run)
    except Exception as exc:  # a failing constructor is the action's error
        return exception_outcome(exc)
    work: asyncio.Future[Any]
    if inspect.iscoroutinefunction(action.start):
        work = asyncio.ensure_future(action.start())
    else:
        work = run_in_thread(action.start, name=f"run-{run.run_id}")
    flusher = asyncio.ensure_future(_flush_progress(run, progress_interval_s))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            cancel_flag.set()
            if isinstance(work, asyncio.Task):
                work.cancel()  # a thread can only be told through the flag
            done, _ = await asyncio.wait({work}, timeout=grace_s)
            if not done:
                log.warning(
                    "run %s: action ignored %s for %.1fs; leaving it behind",
                    run.run_id,
                    stop.kind,
                    grace_s,
                )
                return stop.outcome()
        return _outcome(work, stop)
    finally:
        stopper.cancel()
        flusher.cancel()
        await asyncio.gather(flusher, stopper, return_exceptions=True)
        run.flush_progress(force=True)


def _outcome(work: asyncio.Future[Any], stop: StopSignal) -> Outcome:
    if work.cancelled():
        return stop.outcome()
    exc = work.exception()
    if exc is None:
        return result_outcome(work.result())
    if stop.requested and isinstance(exc, RunCancelledError | asyncio.CancelledError):
        # The action stopped because we asked: report why we asked (a timeout is a failure).
        return stop.outcome()
    return exception_outcome(exc)


async def _flush_progress(run: Run, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        run.flush_progress()
