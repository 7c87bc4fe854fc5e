"""What one attempt runs, and running it: the request's action resolved to a target (a plugin
of the worker's, or a tenant's published version, installed and confined), then executed
until it ends, is stopped, or times out.

The worker (`worker.py`) decides whether an attempt runs at all (attempt limit, category,
early cancels); `AttemptRunner` decides what it runs and runs it.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ValidationError

from runmesh.catalog.errors import RunRoleError
from runmesh.core.db import MigrationError
from runmesh.core.errors import PluginInstallError, UnknownPluginError
from runmesh.core.events import LogPayload, PluginManifest, RunRequest, StartedPayload
from runmesh.core.settings import Settings
from runmesh.execution import Failed, Outcome, StopSignal
from runmesh.execution.isolation import run_method
from runmesh.execution.memory_limit import JobCgroups
from runmesh.execution.outcome import invalid_params
from runmesh.execution.watchdog import LoopWatchdog
from runmesh.plugins.redaction import redacted_params
from runmesh.plugins.registry import PluginRegistry, unknown_action
from runmesh.plugins.run import RunContext
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.execution import ExecutionTarget, JobLimits, execute_target
from runmesh.worker.metrics import WorkerMetrics
from runmesh.worker.plugin_install import PluginInstaller
from runmesh.worker.published_plugins import PublishedPlugins
from runmesh.worker.tenant_code import TenantCodeAccess, TenantCodeGuard


class AttemptRunner:
    """Resolves and runs the attempts of one category's worker.

    Args:
        category: The worker's category.
        registry: The worker's own plugins (built-in and `RUNMESH_PLUGIN_PATH`).
        published: Tenants' published versions, as announced on `runmesh.plugins`.
        settings: The worker's settings.
        metrics: The worker's metrics.
        watchdog: The worker's event-loop watchdog (in-process tasks run under it).
    """

    def __init__(
        self,
        category: str,
        registry: PluginRegistry,
        published: PublishedPlugins,
        settings: Settings,
        metrics: WorkerMetrics,
        watchdog: LoopWatchdog,
    ) -> None:
        self.category = category
        self.registry = registry
        self.published = published
        self.settings = settings
        self.metrics = metrics
        self.watchdog = watchdog
        self.installer = PluginInstaller(settings.plugins, settings.s3)
        self.tenant_code: TenantCodeGuard | None = None
        """Set by the worker once its database pool is open: runs of tenant code need it."""
        self.job_cgroups: JobCgroups | None = None
        """Set by the worker at start where it limits jobs' memory with cgroups."""

    async def run(
        self,
        request: RunRequest,
        attempt: int,
        emitter: RunEmitter,
        stop: StopSignal,
        gpus: tuple[str, ...] = (),
    ) -> Outcome | None:
        """Run one attempt of `request` to its outcome, a job of it seeing only the `gpus` the
        worker gave it; None = abandon it (shutdown)."""
        missing = _missing_labels(request, self.settings.worker_labels)
        if missing:
            # Routed here by the pool's other workers' labels: the pool is misconfigured.
            return Failed(
                "PlacementMismatch",
                f"the run needs labels {missing} that this worker (pool "
                f"{self.settings.worker_pool!r}, labels {self.settings.worker_labels}) lacks; "
                "give every worker of a pool the same labels",
            )
        if request.workspace is not None and request.workspace.split("/")[1] != request.tenant:
            # A request on Kafka can name any folder: a tenant's run gets its own tenant's only.
            return Failed(
                "InvalidWorkspace",
                f"workspace {request.workspace!r} is not one of tenant {request.tenant!r}'s",
            )
        try:
            plugin, action = self.registry.resolve_action(
                request.plugin, self.category, request.action
            )
        except UnknownPluginError as exc:
            published = await self._find_published(request)
            if published is None:
                return Failed("UnknownAction", str(exc))
            return await self._run_published(request, attempt, published, emitter, stop, gpus)
        if action.method == "restapi":
            return _not_runnable(action.name, plugin.ref)
        request = with_default_timeout(request, action.config.timeout_s)
        try:
            params = action.cls.params_model.model_validate(request.params)
        except ValidationError as exc:
            log_payload, failure = invalid_params(plugin.ref, action.name, exc)
            await emitter.publish_now("run.log", log_payload)
            return failure
        await emitter.publish_now(
            "run.started",
            StartedPayload(
                plugin=plugin.code,
                plugin_version=plugin.version,
                action=action.name,
                params=redacted_params(params),
                parent_run_id=request.parent_run_id,
            ),
        )
        self.metrics.child(self.metrics.runs_started, self.category).inc()
        target = ExecutionTarget(
            code=plugin.code,
            version=plugin.version,
            action=action.name,
            method=run_method(plugin, action, self.settings.in_process_plugins),
            directory=plugin.directory,
            cls=action.cls,
        )
        return await self._execute(request, attempt, target, emitter, stop, gpus, params)

    async def _find_published(self, request: RunRequest) -> PluginManifest | None:
        """The tenant's published version a request names, if it names one."""
        if request.plugin is None:
            return None
        code, _, version = request.plugin.partition("@")
        return await self.published.find(request.tenant, code, version or None)

    async def _run_published(
        self,
        request: RunRequest,
        attempt: int,
        plugin: PluginManifest,
        emitter: RunEmitter,
        stop: StopSignal,
        gpus: tuple[str, ...],
    ) -> Outcome | None:
        """Run an action of a published version: install it (once per checksum), then run the
        action as a confined job with the version's interpreter, which validates the params
        and announces `run.started` itself."""
        ref = f"{plugin.code}@{plugin.version}"
        if plugin.category != self.category:
            return Failed(
                "UnknownAction",
                f"plugin {ref} is a {plugin.category!r} plugin, not {self.category!r}",
            )
        action = plugin.actions.get(request.action)
        if action is None:
            return Failed("UnknownAction", unknown_action(ref, request.action, plugin.actions))
        if action.method == "restapi":
            return _not_runnable(request.action, ref)
        request = with_default_timeout(request, action.timeout_s)

        async def log_line(message: str) -> None:
            await emitter.publish_now("run.log", LogPayload(level="info", message=message))

        install = asyncio.ensure_future(self.installer.install(plugin, log_line))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({install, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not install.done():  # stopped first: the installer cleans up as it unwinds
                install.cancel()
            await asyncio.gather(install, stopped, return_exceptions=True)
        if stop.requested:
            return None if stop.kind == "shutdown" else stop.outcome()
        try:
            installed = install.result()
        except PluginInstallError as exc:
            return Failed("PluginInstallError", str(exc))
        self.metrics.child(self.metrics.runs_started, self.category).inc()
        target = ExecutionTarget(
            code=plugin.code,
            version=plugin.version,
            action=request.action,
            method="job",
            directory=installed.directory,
            python=installed.python,
        )
        if self.tenant_code is None:
            raise RuntimeError("the worker has not opened its database yet")
        try:
            async with self.tenant_code.access(
                request.run_id, request.tenant, installed.directory, request.timeout_s
            ) as access:
                return await self._execute(
                    request, attempt, target, emitter, stop, gpus, access=access
                )
        except (RunRoleError, MigrationError) as exc:  # the operator's to fix: said once
            return Failed(type(exc).__name__, str(exc))

    async def _execute(
        self,
        request: RunRequest,
        attempt: int,
        target: ExecutionTarget,
        emitter: RunEmitter,
        stop: StopSignal,
        gpus: tuple[str, ...],
        params: BaseModel | None = None,
        access: TenantCodeAccess | None = None,
    ) -> Outcome | None:
        timer = None
        if request.timeout_s is not None:
            timer = asyncio.get_running_loop().call_later(
                request.timeout_s,
                stop.request,
                "timeout",
                f"run exceeded its timeout of {request.timeout_s:g}s",
            )
        in_flight = self.metrics.child(self.metrics.runs_in_flight, self.category)
        in_flight.inc()
        try:
            outcome = await execute_target(
                target,
                request,
                attempt,
                RunContext(
                    tenant=request.tenant,
                    category=self.category,
                    settings=self.settings if access is None else access.settings,
                    plugin=target.code,
                    plugin_version=target.version,
                    workspace=request.workspace or "",
                ),
                emitter,
                stop,
                self.settings,
                params=params,
                watchdog=self.watchdog,
                access=access,
                limits=JobLimits(gpus, self.job_cgroups),
            )
        finally:
            in_flight.dec()
            if timer is not None:
                timer.cancel()
        return None if stop.kind == "shutdown" else outcome


def with_default_timeout(request: RunRequest, timeout_s: float | None) -> RunRequest:
    """`request` with its action's default timeout where it names none of its own."""
    if request.timeout_s is not None or timeout_s is None:
        return request
    return request.model_copy(update={"timeout_s": timeout_s})


def _not_runnable(action: str, ref: str) -> Failed:
    return Failed(
        "UnsupportedMethod",
        f"action {action!r} of {ref} is a restapi action: it is served over HTTP, not run as a run",
    )


def _missing_labels(request: RunRequest, labels: list[str]) -> list[str]:
    """The labels the request's placement needs that `labels` lacks."""
    wanted = request.placement.labels if request.placement is not None else []
    return sorted(set(wanted) - set(labels))
