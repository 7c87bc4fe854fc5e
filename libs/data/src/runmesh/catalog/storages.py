"""Typed data access to `catalog.storages`, scoped by the tenant each function takes first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import orjson

from runmesh.catalog.errors import DuplicateNameError
from runmesh.catalog.models import StorageCreate
from runmesh.catalog.queries import (
    TIMEOUT_S,
    Executor,
    fetch_newest_first,
    fetch_tenant_row,
    to_json,
)
from runmesh.core.events import JsonObject

StorageProvider: TypeAlias = Literal["file", "s3", "http"]

_STORAGE_COLUMNS = "id, tenant, name, provider, config::text AS config, created_at"


@dataclass(slots=True, frozen=True)
class StorageRow:
    """A `catalog.storages` row; `config` as validated for its provider."""

    id: uuid.UUID
    tenant: str
    name: str
    provider: StorageProvider
    config: JsonObject
    created_at: datetime


def _storage(row: Mapping[str, Any]) -> StorageRow:
    return StorageRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        provider=row["provider"],
        config=orjson.loads(row["config"]),
        created_at=row["created_at"],
    )


async def create_storage(conn: Executor, tenant: str, storage: StorageCreate) -> StorageRow:
    """Store a validated storage; `DuplicateNameError` when the tenant has its name."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO catalog.storages (id, tenant, name, provider, config)
        VALUES ($1, $2, $3, $4, $5::text::jsonb)
        ON CONFLICT (tenant, name) DO NOTHING
        RETURNING {_STORAGE_COLUMNS}
        """,
        uuid.uuid4(),
        tenant,
        storage.name,
        storage.provider,
        to_json(storage.config.model_dump(mode="json", context={"reveal_secrets": True})),
        timeout=TIMEOUT_S,
    )
    if row is None:
        raise DuplicateNameError(f"a storage named {storage.name!r} already exists")
    return _storage(row)


async def get_storage(conn: Executor, tenant: str, storage_id: uuid.UUID) -> StorageRow | None:
    """The tenant's storage, or None (also for another tenant's)."""
    row = await fetch_tenant_row(conn, "storages", _STORAGE_COLUMNS, tenant, storage_id)
    return None if row is None else _storage(row)


async def list_storages(
    conn: Executor,
    tenant: str,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[StorageRow]:
    """The tenant's storages, newest first, after the position `before` (created_at, id)."""
    rows = await fetch_newest_first(conn, "storages", _STORAGE_COLUMNS, tenant, before, limit)
    return [_storage(row) for row in rows]
