"""Running one attempt's action as a `task` in the worker or as a `job` in a child process."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.core.telemetry import trace_carrier
from runmesh.execution import JobSpec, StopSignal, execute_job, execute_task
from runmesh.execution.memory_limit import JobCgroups, MemoryLimit, MemoryLimitError
from runmesh.execution.outcome import Failed, Outcome
from runmesh.execution.watchdog import LoopWatchdog
from runmesh.plugins.action import Action
from runmesh.plugins.run import Run, RunContext
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.tenant_code import TenantCodeAccess


@dataclass(slots=True, frozen=True)
class JobLimits:
    """What a run's job may use of its worker: the GPUs the worker gave it (the only ones it
    sees) and, where the worker limits memory with cgroups, where it makes the job's group."""

    gpus: tuple[str, ...] = ()
    cgroups: JobCgroups | None = None

    def memory_mb(self, request: RunRequest, settings: Settings) -> int:
        """The run's own `resources.memory_mb`, else the platform's default for a job."""
        asked = request.resources.memory_mb if request.resources is not None else 0
        return asked or settings.job_memory_mb

    async def memory(
        self, request: RunRequest, attempt: int, settings: Settings
    ) -> MemoryLimit | None:
        """The job's memory limit: a cgroup of its own, made now (`release` removes it), or
        the opt-in RLIMIT; `MemoryLimitError` when its group cannot be made."""
        mb = self.memory_mb(request, settings)
        if self.cgroups is not None:
            return await asyncio.to_thread(self.cgroups.limit, f"{request.run_id}-{attempt}", mb)
        return MemoryLimit(mb=mb, how="rlimit") if settings.job_memory_limit == "rlimit" else None

    async def release(self, memory: MemoryLimit | None) -> None:
        """After the job: remove its group, with anything it left running there."""
        if self.cgroups is not None and memory is not None:
            await asyncio.to_thread(self.cgroups.remove, memory)


@dataclass(slots=True, frozen=True)
class ExecutionTarget:
    """What a run executes: an action this worker imported, or a published version's action,
    which only its job imports, with the interpreter of the version's virtualenv."""

    code: str
    version: str
    action: str
    method: str
    directory: Path
    cls: type[Action] | None = None
    python: Path | None = None


async def execute_target(
    target: ExecutionTarget,
    request: RunRequest,
    attempt: int,
    context: RunContext,
    emitter: RunEmitter,
    stop: StopSignal,
    settings: Settings,
    *,
    params: BaseModel | None = None,
    watchdog: LoopWatchdog | None = None,
    access: TenantCodeAccess | None = None,
    limits: JobLimits | None = None,
) -> Outcome:
    """Run `target` for one attempt of `request` until it ends or `stop` takes effect.

    A task needs the validated `params`; a job gets the request's raw params (a published
    version's job validates them itself). A tenant's code runs with `access`: confined, its
    storages served by the access's broker. A job is held to `limits`; an action run in the
    worker (a task) shares the worker's memory and GPUs.
    """
    if target.method == "job":
        limits = limits or JobLimits()
        try:
            memory = await limits.memory(request, attempt, settings)
        except MemoryLimitError as exc:
            return Failed("MemoryLimitError", f"the worker cannot limit the job's memory: {exc}")
        try:
            spec = JobSpec(
                plugin_dir=str(target.directory),
                action=target.action,
                params=request.params,
                run_id=request.run_id,
                attempt=attempt,
                memory=memory,
                gpu_devices=limits.gpus,
                progress_interval_s=settings.progress_interval_s,
                context=context,
                trace_carrier=trace_carrier(),
                validates_params=target.python is not None,
                parent_run_id=request.parent_run_id,
                confinement=None if access is None else access.confinement,
                brokered=access is not None,
            )
            return await execute_job(
                spec,
                emitter.emit_async,
                stop,
                grace_s=settings.cancel_grace_s,
                python=target.python,
                calls=None if access is None else access.broker,
            )
        finally:
            await limits.release(memory)
    if target.cls is None or params is None:
        raise RuntimeError(f"{target.code} {target.action}: a task needs its class")
    cancel_flag = threading.Event()
    run = Run.for_action(
        target.cls,
        run_id=request.run_id,
        attempt=attempt,
        sink=emitter,
        cancel_flag=cancel_flag,
        progress_interval_s=settings.progress_interval_s,
        context=context,
    )
    return await execute_task(
        target.cls,
        params,
        run,
        cancel_flag,
        stop,
        grace_s=settings.cancel_grace_s,
        progress_interval_s=settings.progress_interval_s,
        watchdog=watchdog,
    )
