"""The storages an upload run opens before its first step: the source and the destination."""

from __future__ import annotations

from dataclasses import dataclass

from runmesh.catalog import repository
from runmesh.pipeline import RunResources
from runmesh.storage import (
    Storage,
    platform_storage,
)
from runmesh.upload.errors import UploadConfigError
from runmesh.upload.params import UploadParams


@dataclass(slots=True, frozen=True)
class UploadStorages:
    """The storage the files are read from (and its name), and the one they are copied to."""

    source: Storage
    source_name: str
    destination: Storage


async def open_upload_storages(resources: RunResources, params: UploadParams) -> UploadStorages:
    """Open the storages `params` name (the platform bucket when no destination is named),
    each closed with the run's resources; an unknown id or a storage that cannot be opened is
    an `UploadConfigError` (or a `StoragePolicyError`) naming it."""
    tenant, settings = resources.tenant, resources.settings
    async with resources.pool.acquire(timeout=30) as conn:
        destination_row = None
        if params.destination is not None:
            destination_row = await repository.get_storage(conn, tenant, params.destination)
            if destination_row is None:
                raise UploadConfigError(f"destination storage {params.destination} not found")
        source_row = await repository.get_storage(conn, tenant, params.storage)
    if destination_row is None:
        destination = resources.storage(platform_storage(settings.s3))
    else:
        destination = resources.tenant_storage(
            destination_row.provider,
            destination_row.config,
            named="the destination storage",
            failed=UploadConfigError,
        )
    if source_row is None:
        raise UploadConfigError(f"storage {params.storage} not found")
    source = resources.tenant_storage(
        source_row.provider,
        source_row.config,
        named=f"storage {source_row.name!r}",
        failed=UploadConfigError,
    )
    return UploadStorages(source, source_row.name, destination)
