"""The child side of a `job`: load the plugin, run the action, pipe its reports to the parent."""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from runmesh.core.events import StartedPayload
from runmesh.core.telemetry import context_from_carrier, setup_tracing
from runmesh.execution.confinement import Confinement, confine
from runmesh.execution.job_channel import JobChannel
from runmesh.execution.job_frames import JobProtocolError
from runmesh.execution.landlock import LandlockError
from runmesh.execution.memory_limit import MemoryLimit
from runmesh.execution.outcome import (
    Failed,
    Outcome,
    exception_outcome,
    invalid_params,
    result_outcome,
)
from runmesh.plugins.loader import load_plugin
from runmesh.plugins.redaction import redacted_params
from runmesh.plugins.run import Run, RunContext
from runmesh.storage.factory import route_storages_through


@dataclass(slots=True, frozen=True)
class JobSpec:
    """Everything a job child needs, picklable (it crosses a spawn boundary)."""

    plugin_dir: str
    action: str
    params: dict[str, Any]
    run_id: uuid.UUID
    attempt: int
    memory: MemoryLimit | None
    """The job's memory limit, applied before anything else; None: none."""
    progress_interval_s: float
    context: RunContext = field(default_factory=RunContext)
    trace_carrier: dict[str, str] = field(default_factory=dict)
    """The run span's context (W3C headers): the action's spans are its children."""
    parent_run_id: uuid.UUID | None = None
    """The run that requested this one, for the `run.started` a job publishes itself."""
    validates_params: bool = False
    """The job validates the params and publishes `run.started` itself: the worker cannot
    import the action (a published plugin, whose requirements live in its own virtualenv)."""
    confinement: Confinement | None = None
    """How a tenant's code is confined: applied before the plugin is loaded."""
    brokered: bool = False
    """A tenant's code: `context.settings` holds no keys, so the job opens every storage
    through the worker's broker."""
    gpu_devices: tuple[str, ...] = ()
    """The GPUs the worker gave the job: its CUDA_VISIBLE_DEVICES, so it sees those only."""


_PR_SET_PDEATHSIG = 1


def job_main(spec: JobSpec, conn: Connection, worker_pid: int) -> None:
    """Entry point of the spawned child process."""
    _die_with_worker(worker_pid)
    if spec.memory is not None:
        spec.memory.apply()
    # Set before the plugin is imported: CUDA reads it once, at its first use.
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpu_devices)
    cancel_flag = threading.Event()
    # SIGTERM is the parent's cancel: let the action stop at its next check; the parent sends
    # SIGKILL if it does not within the grace period.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: cancel_flag.set())
    # SIGUSR1: the worker is shutting down and the run will be redone by another attempt.
    shutdown_flag = threading.Event()

    def on_shutdown(_sig: int, _frame: object) -> None:
        shutdown_flag.set()
        cancel_flag.set()

    signal.signal(signal.SIGUSR1, on_shutdown)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which decides
    channel = JobChannel(conn)
    outcome = _run(spec, channel, cancel_flag, shutdown_flag)
    try:
        channel.finish(outcome)
    except (JobProtocolError, PydanticSerializationError) as exc:  # the result, not the pipe
        channel.finish(Failed("InvalidResult", f"the action's result cannot be sent: {exc}"))
    conn.close()


def _die_with_worker(worker_pid: int) -> None:
    """A job must not outlive a worker killed with SIGKILL (its run is redone elsewhere).

    The job's parent is the job fork server, which exits as soon as the worker is gone (its
    end of the server's pipe closes); the parent-death signal then kills the job.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        os.kill(worker_pid, 0)
    except ProcessLookupError:
        os._exit(1)  # the worker died before the signal was armed
    if os.getppid() == 1:
        os._exit(1)  # the fork server died before the signal was armed


def _run(
    spec: JobSpec, sink: JobChannel, cancel_flag: threading.Event, shutdown_flag: threading.Event
) -> Outcome:
    if spec.confinement is not None:
        try:
            confine(spec.confinement)
        except LandlockError as exc:
            return Failed(
                "ConfinementError",
                f"this worker cannot confine a tenant's code: {exc} (RUNMESH_JOB_SANDBOX=off "
                "runs it unconfined; docs/security.md)",
            )
        sys.dont_write_bytecode = True  # the plugin's directory is read-only now
    if spec.brokered:
        route_storages_through(sink)
    try:
        plugin = load_plugin(Path(spec.plugin_dir))
        loaded = plugin.action(spec.action)
        try:
            params = loaded.cls.params_model.model_validate(spec.params)
        except ValidationError as exc:
            if not spec.validates_params:
                raise
            log_payload, failure = invalid_params(plugin.ref, spec.action, exc)
            sink.emit("run.log", log_payload)
            return failure
        if spec.validates_params:
            sink.emit(
                "run.started",
                StartedPayload(
                    plugin=plugin.code,
                    plugin_version=plugin.version,
                    action=spec.action,
                    params=redacted_params(params),
                    parent_run_id=spec.parent_run_id,
                ),
            )
        run = Run.for_action(
            loaded.cls,
            run_id=spec.run_id,
            attempt=spec.attempt,
            sink=sink,
            cancel_flag=cancel_flag,
            progress_interval_s=spec.progress_interval_s,
            context=spec.context,
            shutdown_flag=shutdown_flag,
        )
        action = loaded.cls(params, run)
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent as the attempt's failure
        return exception_outcome(exc)
    done = threading.Event()
    flusher = threading.Thread(
        target=_flush_progress, args=(run, done, spec.progress_interval_s), daemon=True
    )
    flusher.start()
    provider = _child_tracing(spec)
    token = otel_context.attach(context_from_carrier(spec.trace_carrier))
    try:
        result = action.start()
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        outcome = result_outcome(result)
    except MemoryError:
        outcome = Failed(
            "OutOfMemory",
            spec.memory.message()
            if spec.memory is not None
            else "out of memory: the machine had no more to give (the job had no limit)",
        )
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent as the attempt's failure
        outcome = exception_outcome(exc)
    finally:
        otel_context.detach(token)
        if provider is not None:
            provider.shutdown()  # exports the spans still batched
        done.set()
        flusher.join()
        run.flush_progress(force=True)
    return outcome


def _child_tracing(spec: JobSpec) -> TracerProvider | None:
    """A tracer provider of the child's own where OTLP export is configured (a spawned
    process inherits none)."""
    settings = spec.context.settings
    if settings is None:
        return None
    return setup_tracing(settings.telemetry, f"runmesh-{spec.context.category or 'job'}-job")


async def _await(value: Any) -> Any:
    return await value


def _flush_progress(run: Run, done: threading.Event, interval_s: float) -> None:
    while not done.wait(interval_s):
        run.flush_progress()
