"""Start the category services (and the demo worker) of `runmesh dev` as child processes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from runmesh.core.categories import BUILTIN_CATEGORIES
from runmesh.core.settings import Settings
from runmesh.sandbox.processes import ChildProcess
from runmesh.worker.process import ALL_READY_MARKER
from runmesh.worker.process import main as serve_category
from runmesh.worker.service import load_service
from runmesh.worker.worker import READY_MARKER

# The service packages of DESIGN §1, each declaring one `Service` (its category is its
# built-in plugin's).
SERVICES: tuple[str, ...] = ("upload", "export", "to_task", "train")
DEMO_CATEGORY = "demo"
GATEWAY_READY_MARKER = "Application startup complete"  # uvicorn, after the app's lifespan
START_TIMEOUT_S = 90.0  # a new consumer group's first join alone takes seconds on Tansu


@dataclass(slots=True, frozen=True)
class ServiceSpec:
    """One process to run: its name (also its log file) and its `python -m` module."""

    name: str
    argv: tuple[str, ...]
    settings: Settings
    ready_marker: str = READY_MARKER  # what its log says once it serves


def demo_plugin_dir() -> Path:
    """The demo plugin shipped inside this package."""
    return Path(str(resources.files("runmesh.cli").joinpath("demo_plugin")))


def unserved_categories() -> list[str]:
    """The platform's categories no category service serves (`data_validation`, `smart_tool`,
    `post_annotation`): their plugins are the tenants' and the published ones."""
    served = {load_service(f"runmesh.{package}:service").category for package in SERVICES}
    return [category for category in BUILTIN_CATEGORIES if category not in served]


def service_specs(settings: Settings, *, demo: bool) -> list[ServiceSpec]:
    """One replica of each category service, one worker serving every other category of the
    platform (so any plugin `runmesh plugin create` makes runs), and the demo worker when
    asked for."""
    specs = [
        ServiceSpec(
            "gateway",
            (sys.executable, "-m", "runmesh.gateway"),
            settings,
            ready_marker=GATEWAY_READY_MARKER,
        ),
        *(
            ServiceSpec(name, (sys.executable, "-m", f"runmesh.{name}"), settings)
            for name in SERVICES
        ),
        ServiceSpec(
            "plugins-worker",
            (sys.executable, "-m", "runmesh.worker", "--category", ",".join(unserved_categories())),
            settings,
            ready_marker=ALL_READY_MARKER,
        ),
    ]
    if demo:
        demo_settings = settings.model_copy(
            update={"plugin_path": [demo_plugin_dir(), *settings.plugin_path]}
        )
        argv = (sys.executable, "-m", "runmesh.worker", "--category", DEMO_CATEGORY)
        specs.append(ServiceSpec("demo-worker", (*argv, "--service", "demo"), demo_settings))
    return specs


async def start_service(spec: ServiceSpec, log_dir: Path) -> ChildProcess:
    """Start one service and wait until its worker serves its topic."""
    child = ChildProcess(spec.name, log_dir / f"{spec.name}.log")
    # The child needs the parent's PATH and Python environment, with the sandbox's settings.
    env = {**os.environ, **spec.settings.to_env()}
    await child.spawn(spec.argv, env=env)
    try:
        await child.wait_ready(
            lambda: _log_contains(child.log_path, spec.ready_marker), timeout_s=START_TIMEOUT_S
        )
    except BaseException:
        await child.stop()
        raise
    return child


async def _log_contains(path: Path, marker: str) -> bool:
    def read() -> bool:
        try:
            return marker in path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    return await asyncio.to_thread(read)


def service_main(name: str) -> Callable[[Settings], None]:
    """The entry point serving `name`: a declared service (`runmesh.upload:service`), the
    service of a category (`upload`, `pre_annotation`, …), or else a worker for that
    category's `RUNMESH_PLUGIN_PATH` plugins and published versions (several categories,
    comma-separated: one worker process serving them all)."""
    if ":" in name:
        return load_service(name).main
    if "," in name:
        categories = [each.strip() for each in name.split(",") if each.strip()]
        return lambda settings: serve_category(categories, settings=settings)
    for package in SERVICES:
        service = load_service(f"runmesh.{package}:service")
        if name in (package, service.category):
            return service.main
    return lambda settings: serve_category(name, settings=settings)
