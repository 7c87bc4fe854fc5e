"""What every neural_net action opens for its run, and closes however the run ends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from runmesh.common.plugins import Run
from runmesh.common.run_resources import close_run_resources, open_catalog_pool
from runmesh.common.settings import Settings
from runmesh.common.storage import Storage
from runmesh.train.artifacts import RunArtifacts


@dataclass(slots=True)
class RunResources:
    """The platform settings, the run's tenant, a catalog pool, the storages opened by URI,
    and the run's folder in the platform bucket."""

    settings: Settings
    tenant: str
    pool: asyncpg.Pool
    artifacts: RunArtifacts
    sources: dict[tuple[str, str], Storage] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def run_resources(
    run: Run, action: str, *, kind: str = "models", owner: uuid.UUID | None = None
) -> AsyncIterator[RunResources]:
    """Open them; `owner` is the run whose folder the files go to (default: this run)."""
    settings = run.context.settings
    if settings is None:
        raise RuntimeError(f"the {action} action needs the platform settings (run.context)")
    pool = await open_catalog_pool(settings)
    resources = RunResources(
        settings,
        run.context.tenant,
        pool,
        RunArtifacts(settings, run.context.tenant, owner or run.run_id, kind=kind),
    )
    try:
        yield resources
    finally:
        await resources.artifacts.close()
        await close_run_resources(resources.sources.values(), pool)
