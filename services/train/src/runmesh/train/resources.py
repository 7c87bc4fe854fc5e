"""What every neural_net action opens for its run, and closes however the run ends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from runmesh.core.settings import Settings
from runmesh.pipeline import open_run_resources, platform_settings
from runmesh.plugins import Run
from runmesh.storage import TenantUris
from runmesh.train.artifacts import RunArtifacts


@dataclass(slots=True)
class NeuralNetResources:
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
) -> AsyncIterator[NeuralNetResources]:
    """Open them (`runmesh.pipeline.open_run_resources` and what it closes); `owner` is the
    run whose folder the files go to (default: this run)."""
    async with open_run_resources(run, platform_settings(run, action)) as opened:
        uris = await opened.tenant_uris()
        artifacts = RunArtifacts(opened.settings, opened.tenant, owner or run.run_id, kind=kind)
        opened.on_close(artifacts.close, "the run's artifacts storage")
        yield NeuralNetResources(opened.settings, opened.tenant, opened.pool, artifacts, uris)
