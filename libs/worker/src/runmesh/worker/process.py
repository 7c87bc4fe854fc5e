"""Run a `Worker` as a process: settings, plugins, signals, tracing, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from runmesh.core.errors import RunmeshError
from runmesh.core.settings import Settings
from runmesh.core.telemetry import setup_tracing
from runmesh.plugins.registry import PluginRegistry
from runmesh.worker.health import HealthServer
from runmesh.worker.worker import Worker

log = logging.getLogger(__name__)


async def serve(worker: Worker) -> None:
    """Run `worker` until SIGTERM or SIGINT, then shut it down gracefully."""
    provider = setup_tracing(worker.settings.telemetry, worker.service)
    health: HealthServer | None = None
    if worker.settings.metrics_port is not None:
        health = HealthServer(
            worker.metrics.registry,
            worker.watchdog,
            port=worker.settings.metrics_port,
            stall_limit_s=worker.settings.health_loop_stall_s,
        )
        health.start()
    worker.watchdog.start()  # beating from now: start-up counts too
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.request_stop)
    try:
        await worker.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        worker.watchdog.stop()
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
    category: str,
    *,
    service: str | None = None,
    builtin_plugins: Sequence[Path] = (),
    settings: Settings | None = None,
) -> None:
    """Entry point of a category service (`python -m runmesh.<service>`, `runmesh worker`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings if settings is not None else Settings()
        registry = build_registry(settings, builtin_plugins)
        worker = Worker(category, registry, settings, service=service)
        asyncio.run(serve(worker))
    except RunmeshError as exc:
        # A person reads this: one line saying what is wrong, no traceback.
        print(f"runmesh {service or category}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
