"""What an export run opens before its first step: the destination storage, the tenant's
storages by URI (for original files) and a local staging folder."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from runmesh.catalog import repository
from runmesh.export.errors import ExportConfigError
from runmesh.export.params import ExportParams
from runmesh.pipeline import RunResources
from runmesh.storage import Storage, TenantUris


@dataclass(slots=True, frozen=True)
class ExportResources:
    """The destination storage (and its name), the tenant's URIs, the staging folder."""

    destination: Storage
    destination_name: str
    uris: TenantUris
    staging: Path


async def open_export_resources(resources: RunResources, params: ExportParams) -> ExportResources:
    """Open them, each closed with the run's resources (the staging folder deleted); an
    unknown storage id or one that cannot be opened is an `ExportConfigError` (or a
    `StoragePolicyError`) naming it."""
    tenant = resources.tenant
    async with resources.pool.acquire(timeout=30) as conn:
        storage = await repository.get_storage(conn, tenant, params.storage)
    if storage is None:
        raise ExportConfigError(f"storage {params.storage} not found")
    destination = resources.tenant_storage(
        storage.provider,
        storage.config,
        named=f"storage {storage.name!r}",
        failed=ExportConfigError,
    )
    # Original files are read only through the tenant's own storages.
    uris = await resources.tenant_uris()
    staging = resources.stack.enter_context(tempfile.TemporaryDirectory(prefix="runmesh-export-"))
    return ExportResources(destination, storage.name, uris, Path(staging))
