"""The `job` method: run an action in a spawned child process the worker can always kill."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from runmesh.common.events import EventPayload
from runmesh.common.execution.job_child import JobSpec, job_main
from runmesh.common.execution.outcome import Cancelled, Failed, Outcome
from runmesh.common.execution.stop import StopSignal

log = logging.getLogger(__name__)

EmitFn = Callable[[str, EventPayload], Awaitable[None]]

_PIPE_QUEUE_SIZE = 256  # messages read ahead of the emitter; the child blocks beyond it

__all__ = ["JobSpec", "execute_job"]


async def execute_job(spec: JobSpec, emit: EmitFn, stop: StopSignal, *, grace_s: float) -> Outcome:
    """Run the action in a child process; its `run` calls arrive through `emit`, in order.

    The child is spawned (not forked: no inherited sockets, locks or event loop), limited to
    `spec.memory_mb` of address space, sent SIGTERM on a stop request and SIGKILL `grace_s`
    later. A crash, an exit without an outcome or a kill ends the attempt `failed`; the worker
    itself is untouched.
    """
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=job_main,
        args=(spec, sender, os.getpid()),
        name=f"runmesh-job-{spec.run_id}",
        daemon=True,
    )
    # Started from the loop thread on purpose: the child's parent-death signal is tied to the
    # thread that forked it, and an executor thread may exit before the job does.
    process.start()
    sender.close()  # the child holds the only writer: EOF means it is gone
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue(maxsize=_PIPE_QUEUE_SIZE)
    reader = threading.Thread(
        target=_read_pipe, args=(receiver, inbox, loop), name=f"job-pipe-{spec.run_id}", daemon=True
    )
    reader.start()
    stopper = asyncio.ensure_future(_stop_process(process, stop, grace_s))
    outcome: Outcome | None = None
    try:
        while (message := await inbox.get()) is not None:
            if message[0] == "event":
                await emit(message[1], message[2])
            elif message[0] == "outcome":
                outcome = message[1]
        await asyncio.to_thread(process.join)
    finally:
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
        if process.is_alive():  # only when this coroutine itself was cancelled
            process.kill()
            await asyncio.to_thread(process.join)
        receiver.close()
    if stop.requested and (outcome is None or isinstance(outcome, Cancelled)):
        return stop.outcome()
    if outcome is None:
        return _crash_outcome(process.exitcode, spec.memory_mb)
    return outcome


def _read_pipe(
    receiver: Connection,
    inbox: asyncio.Queue[tuple[Any, ...] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Forward the child's messages to the loop, blocking (back-pressure) when it lags."""
    try:
        while True:
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                break
            asyncio.run_coroutine_threadsafe(inbox.put(message), loop).result()
    finally:
        try:
            asyncio.run_coroutine_threadsafe(inbox.put(None), loop).result()
        except RuntimeError:
            return  # the loop is gone: the worker is shutting down and no one awaits this job


async def _stop_process(
    process: multiprocessing.process.BaseProcess, stop: StopSignal, grace_s: float
) -> None:
    await stop.wait()
    if process.is_alive() and process.pid is not None:
        # SIGUSR1 says "stop, you will be redone" (shutdown); SIGTERM says "stop" (cancel,
        # timeout). One signal each, so the child never sees a stop without its reason.
        os.kill(process.pid, signal.SIGUSR1 if stop.kind == "shutdown" else signal.SIGTERM)
    await asyncio.sleep(grace_s)
    if process.is_alive():
        log.warning("job %s ignored SIGTERM for %.1fs; sending SIGKILL", process.name, grace_s)
        process.kill()


def _crash_outcome(exitcode: int | None, memory_mb: int) -> Failed:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        how = f"was killed by {name}"
    else:
        how = f"exited with code {exitcode} without reporting a result"
    return Failed(
        "JobCrashed",
        f"the job process {how} (a crash, os._exit, or the {memory_mb} MB memory limit "
        "RUNMESH_JOB_MEMORY_MB)",
    )
