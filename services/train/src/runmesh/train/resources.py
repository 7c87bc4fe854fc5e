"""What every neural_net action opens for its run, and closes however the run ends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from runmesh.catalog.tenant_storages import tenant_uris
from runmesh.core.settings import Settings
from runmesh.pipeline.resources import close_run_resources, open_catalog_pool
from runmesh.plugins import Run
from runmesh.storage import TenantUris
from runmesh.train.artifacts import RunArtifacts


@dataclass(slots=True)
class RunResources:
    """The platform settings, the run's tenant, a catalog pool, the tenant's URIs (opened
    through its storages only), and the run's folder in the platform bucket."""

    settings: Settings
    tenant: str
    pool: asyncpg.Pool
    artifacts: RunArtifacts
    uris: TenantUris


@contextlib.asynccontextmanager
async def run_resources(
    run: Run, action: str, *, kind: str = "models", owner: uuid.UUID | None = None
) -> AsyncIterator[RunResources]:
    """Open them; `owner` is the run whose folder the files go to (default: this run)."""
    settings = run.context.settings
    if settings is None:
        raise RuntimeError(f"the {action} action needs the platform settings (run.context)")
    pool = await open_catalog_pool(settings)
    tenant = run.context.tenant
    try:
        async with pool.acquire(timeout=30) as conn:
            uris = await tenant_uris(conn, tenant, settings.storage)
    except BaseException:
        await pool.close()
        raise
    resources = RunResources(
        settings,
        tenant,
        pool,
        RunArtifacts(settings, tenant, owner or run.run_id, kind=kind),
        uris,
    )
    try:
        yield resources
    finally:
        await resources.artifacts.close()
        await close_run_resources(resources.uris.opened, pool)
