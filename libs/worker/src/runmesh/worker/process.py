"""Run a `Worker` as a process: settings, plugins, signals, tracing, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from runmesh.core.errors import ConfigurationError, RunmeshError
from runmesh.core.logs import configure_logging
from runmesh.core.settings import Settings
from runmesh.core.telemetry import setup_tracing
from runmesh.execution.watchdog import LoopWatchdog
from runmesh.plugins.registry import PluginRegistry
from runmesh.worker.health import HealthServer
from runmesh.worker.metrics import WorkerMetrics
from runmesh.worker.worker import Worker

log = logging.getLogger(__name__)


ALL_READY_MARKER = "serving every category"
"""Logged once every worker of a several-category process serves (supervisors wait for it)."""


async def serve(*workers: Worker) -> None:
    """Run `workers` (one per category, sharing the process's metrics and loop watchdog)
    until SIGTERM or SIGINT, then shut them all down gracefully."""
    first = workers[0]
    settings = first.settings
    provider = setup_tracing(settings.telemetry, first.service)
    health: HealthServer | None = None
    if settings.metrics_port is not None:
        health = HealthServer(
            first.metrics.registry,
            first.watchdog,
            port=settings.metrics_port,
            stall_limit_s=settings.health_loop_stall_s,
        )
        health.start()
    first.watchdog.start()  # beating from now: start-up counts too
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        for worker in workers:
            worker.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    try:
        # One worker failing to start stops the others: the process exits with its error.
        try:
            async with asyncio.TaskGroup() as group:
                for worker in workers:
                    group.create_task(worker.run())
                if len(workers) > 1:
                    await asyncio.gather(*(worker.ready.wait() for worker in workers))
                    served = ", ".join(worker.category for worker in workers)
                    log.info("%s: %s", ALL_READY_MARKER, served)
        except* RunmeshError as errors:
            raise errors.exceptions[0] from None
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        first.watchdog.stop()
        if health is not None:
            health.close()
        if provider is not None:
            provider.shutdown()


def build_registry(settings: Settings, builtin_plugins: Sequence[Path] = ()) -> PluginRegistry:
    """The service's built-in plugins plus the user plugins on `RUNMESH_PLUGIN_PATH`."""
    registry = PluginRegistry()
    for directory in builtin_plugins:
        registry.add_directory(directory, builtin=True)
    registry.scan(settings.plugin_path)
    return registry


def main(
    category: str | Sequence[str],
    *,
    service: str | None = None,
    builtin_plugins: Sequence[Path] = (),
    settings: Settings | None = None,
) -> None:
    """Entry point of a category service (`python -m runmesh.<service>`, `runmesh worker`):
    one worker per category, in one process, serving the built-in plugins and those on
    `RUNMESH_PLUGIN_PATH` and every published version of its category."""
    categories = [category] if isinstance(category, str) else list(category)
    name = service or ",".join(categories)
    try:
        if not categories:
            raise ConfigurationError("no category to serve")
        settings = settings if settings is not None else Settings()
        configure_logging(name, settings.telemetry.log_format)
        registry = build_registry(settings, builtin_plugins)
        metrics = WorkerMetrics()
        watchdog = LoopWatchdog(limit_s=settings.loop_block_limit_s)
        workers = [
            Worker(
                each,
                registry,
                settings,
                service=service or each,
                metrics=metrics,
                watchdog=watchdog,
            )
            for each in dict.fromkeys(categories)
        ]
        asyncio.run(serve(*workers))
    except RunmeshError as exc:
        # A person reads this: one line saying what is wrong, no traceback.
        print(f"runmesh {name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
