"""Every storage of a tenant, and the `TenantUris` that opens a run's URIs through them."""

from __future__ import annotations

from runmesh.catalog.repository import Executor, StorageRow, list_storages
from runmesh.core.settings_parts import StorageSettings
from runmesh.storage import TenantUris

_PAGE = 500


async def tenant_storages(conn: Executor, tenant: str) -> list[StorageRow]:
    """All of the tenant's storages, newest first."""
    found: list[StorageRow] = []
    while page := await list_storages(
        conn,
        tenant,
        before=(found[-1].created_at, found[-1].id) if found else None,
        limit=_PAGE,
    ):
        found.extend(page)
        if len(page) < _PAGE:
            break
    return found


async def tenant_uris(conn: Executor, tenant: str, storage: StorageSettings) -> TenantUris:
    """A `TenantUris` of `tenant` over its storages as they are now (close it when done)."""
    return TenantUris(tenant, await tenant_storages(conn, tenant), storage)
