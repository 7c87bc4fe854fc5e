"""Typed data access to schema `catalog`; every function takes the tenant first and is
scoped by it, so another tenant's rows are neither read nor written.

`conn` is an asyncpg connection or pool. JSON goes in and out as text, so the functions work
whether or not the connection has the JSON codecs of `runmesh.common.db.create_pool`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias, TypedDict, cast

import asyncpg
import orjson

from runmesh.common.catalog.errors import (
    CatalogNotFoundError,
    DataUnitConflictError,
    DuplicateNameError,
)
from runmesh.common.catalog.models import DataCollectionCreate, StorageCreate
from runmesh.common.events import JsonObject

# What queries run on: a connection, a pool's connection or the pool itself (asyncpg ships
# no type information, so mypy sees these as Any).
Executor: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool

StorageProvider: TypeAlias = Literal["file", "s3", "http"]

_TIMEOUT_S = 30.0
_STORAGE_COLUMNS = "id, tenant, name, provider, config::text AS config, created_at"
_COLLECTION_COLUMNS = (
    "id, tenant, name, description, file_specifications::text AS file_specifications,"
    " data_unit_meta_schema::text AS data_unit_meta_schema, created_at"
)
_UNIT_COLUMNS = (
    "id, tenant, data_collection_id, unit_key, files::text AS files, meta::text AS meta,"
    " upload_run_id, created_at, updated_at"
)


# -- shared queries --------------------------------------------------------------------------


async def fetch_tenant_row(
    conn: Executor, table: str, columns: str, tenant: str, row_id: uuid.UUID | int
) -> asyncpg.Record | None:
    """The row `row_id` of `catalog.<table>` if it is the tenant's (None for another's)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {columns} FROM catalog.{table} WHERE id = $1 AND tenant = $2",
        row_id,
        tenant,
        timeout=_TIMEOUT_S,
    )
    return row


async def fetch_newest_first(
    conn: Executor,
    table: str,
    columns: str,
    tenant: str,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The tenant's rows of `catalog.<table>`, newest first, after the keyset position
    `before` (created_at, id)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {columns} FROM catalog.{table}
        WHERE tenant = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $4
        """,
        tenant,
        before[0] if before else None,
        before[1] if before else None,
        limit,
        timeout=_TIMEOUT_S,
    )
    return rows


# -- rows ------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class StorageRow:
    """A `catalog.storages` row; `config` as validated for its provider."""

    id: uuid.UUID
    tenant: str
    name: str
    provider: StorageProvider
    config: JsonObject
    created_at: datetime


@dataclass(slots=True, frozen=True)
class FileSpecification:
    """One kind of file of a data collection's units."""

    name: str
    required: bool
    extensions: tuple[str, ...]  # lowercase with a leading dot: (".jpg", ".jpeg")
    is_primary: bool

    def to_json(self) -> JsonObject:
        """As stored in `file_specifications`."""
        return {
            "name": self.name,
            "required": self.required,
            "extensions": list(self.extensions),
            "is_primary": self.is_primary,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FileSpecification:
        """From one stored `file_specifications` item."""
        return cls(
            name=str(value["name"]),
            required=bool(value.get("required", True)),
            extensions=tuple(str(ext) for ext in value.get("extensions", ())),
            is_primary=bool(value.get("is_primary", False)),
        )


@dataclass(slots=True, frozen=True)
class DataCollectionRow:
    """A `catalog.data_collections` row."""

    id: uuid.UUID
    tenant: str
    name: str
    description: str
    file_specifications: tuple[FileSpecification, ...]
    data_unit_meta_schema: JsonObject | None
    created_at: datetime

    @property
    def primary(self) -> FileSpecification | None:
        """The primary file specification, if one is marked."""
        return next((spec for spec in self.file_specifications if spec.is_primary), None)


class DataFile(TypedDict):
    """One stored file of a data unit."""

    uri: str
    size: int
    checksum: str | None  # e.g. "sha256:<hex>"
    media_type: str | None


@dataclass(slots=True, frozen=True)
class DataUnitRow:
    """A `catalog.data_units` row: its files by specification name, and its meta."""

    id: int
    tenant: str
    data_collection_id: uuid.UUID
    unit_key: str
    files: dict[str, DataFile]
    meta: JsonObject
    upload_run_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True, frozen=True)
class NewDataUnit:
    """A data unit to store: the files sharing the stem `unit_key`, by specification name."""

    unit_key: str
    files: Mapping[str, DataFile]
    meta: JsonObject = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class RegisteredDataUnits:
    """The ids of the data units registered by hand, in the order given, and what changed."""

    ids: tuple[int, ...]
    created: int  # new rows
    updated: int  # existing rows whose files or meta changed; the rest were equal already


def _json(value: Any) -> str:  # Any: any JSON-serialisable value
    return orjson.dumps(value).decode()


def _storage(row: Mapping[str, Any]) -> StorageRow:
    return StorageRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        provider=row["provider"],
        config=orjson.loads(row["config"]),
        created_at=row["created_at"],
    )


def _collection(row: Mapping[str, Any]) -> DataCollectionRow:
    schema = row["data_unit_meta_schema"]
    return DataCollectionRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        description=row["description"],
        file_specifications=tuple(
            FileSpecification.from_json(item) for item in orjson.loads(row["file_specifications"])
        ),
        data_unit_meta_schema=None if schema is None else orjson.loads(schema),
        created_at=row["created_at"],
    )


def _unit(row: Mapping[str, Any]) -> DataUnitRow:
    return DataUnitRow(
        id=row["id"],
        tenant=row["tenant"],
        data_collection_id=row["data_collection_id"],
        unit_key=row["unit_key"],
        files=cast("dict[str, DataFile]", orjson.loads(row["files"])),
        meta=orjson.loads(row["meta"]),
        upload_run_id=row["upload_run_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# -- storages --------------------------------------------------------------------------------


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
        _json(storage.config.model_dump(mode="json", context={"reveal_secrets": True})),
        timeout=_TIMEOUT_S,
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


# -- data collections ------------------------------------------------------------------------


async def create_collection(
    conn: Executor, tenant: str, collection: DataCollectionCreate
) -> DataCollectionRow:
    """Store a validated data collection; `DuplicateNameError` when the tenant has its name."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO catalog.data_collections
            (id, tenant, name, description, file_specifications, data_unit_meta_schema)
        VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb)
        ON CONFLICT (tenant, name) DO NOTHING
        RETURNING {_COLLECTION_COLUMNS}
        """,
        uuid.uuid4(),
        tenant,
        collection.name,
        collection.description,
        _json([spec.model_dump(mode="json") for spec in collection.file_specifications]),
        None
        if collection.data_unit_meta_schema is None
        else _json(collection.data_unit_meta_schema),
        timeout=_TIMEOUT_S,
    )
    if row is None:
        raise DuplicateNameError(f"a data collection named {collection.name!r} already exists")
    return _collection(row)


async def get_collection(
    conn: Executor, tenant: str, collection_id: uuid.UUID
) -> DataCollectionRow | None:
    """The tenant's data collection, or None (also for another tenant's)."""
    row = await fetch_tenant_row(
        conn, "data_collections", _COLLECTION_COLUMNS, tenant, collection_id
    )
    return None if row is None else _collection(row)


async def list_collections(
    conn: Executor,
    tenant: str,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[DataCollectionRow]:
    """The tenant's data collections, newest first, after the position `before`."""
    rows = await fetch_newest_first(
        conn, "data_collections", _COLLECTION_COLUMNS, tenant, before, limit
    )
    return [_collection(row) for row in rows]


# -- data units ------------------------------------------------------------------------------


async def upsert_data_units(
    conn: Executor,
    tenant: str,
    collection_id: uuid.UUID,
    run_id: uuid.UUID | None,
    units: Sequence[NewDataUnit],
) -> list[int]:
    """Store a batch of data units in one statement; their ids, in the order of `units`.

    A unit whose (run_id, unit_key) is stored already gets the new files and meta, so a run
    executed again updates what its first execution wrote. Without a run id every unit is
    new. Nothing is stored and `CatalogNotFoundError` is raised when the collection is not
    the tenant's; `DataUnitConflictError` when a unit key repeats in the batch or the run
    stored one of the keys in another collection.
    """
    if not units:
        return []
    keys = [unit.unit_key for unit in units]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})[:5]
        raise DataUnitConflictError(f"unit keys repeat in one batch: {', '.join(repeated)}")
    rows = await conn.fetch(
        """
        WITH target AS (
            SELECT id FROM catalog.data_collections WHERE id = $2 AND tenant = $1
        )
        INSERT INTO catalog.data_units AS d
            (tenant, data_collection_id, unit_key, files, meta, upload_run_id)
        SELECT $1, target.id, u.unit_key, u.files::jsonb, u.meta::jsonb, $3::uuid
        FROM target,
             unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY
                 AS u(unit_key, files, meta, ord)
        WHERE NOT EXISTS (
            SELECT 1 FROM catalog.data_units AS x
            WHERE x.upload_run_id = $3 AND x.unit_key = ANY($4::text[])
              AND (x.tenant <> $1 OR x.data_collection_id <> $2)
        )
        ORDER BY u.ord
        ON CONFLICT (upload_run_id, unit_key) DO UPDATE
            SET files = EXCLUDED.files, meta = EXCLUDED.meta, updated_at = now()
            WHERE d.tenant = EXCLUDED.tenant
              AND d.data_collection_id = EXCLUDED.data_collection_id
        RETURNING d.id, d.unit_key
        """,
        tenant,
        collection_id,
        run_id,
        keys,
        [_json(dict(unit.files)) for unit in units],
        [_json(unit.meta) for unit in units],
        timeout=_TIMEOUT_S,
    )
    ids: dict[str, int] = {row["unit_key"]: row["id"] for row in rows}
    if len(ids) == len(keys):
        return [ids[key] for key in keys]
    if not rows and await get_collection(conn, tenant, collection_id) is None:
        raise CatalogNotFoundError(f"data collection {collection_id} not found")
    missing = [key for key in keys if key not in ids][:5]
    raise DataUnitConflictError(
        f"run {run_id} already stored unit keys {', '.join(missing)} in another collection"
    )


@contextlib.asynccontextmanager
async def _transaction(conn: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `conn`, or on a connection of it when it is a pool (a savepoint when
    the connection is in a transaction already)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, acquired.transaction():
            yield acquired
    else:
        async with conn.transaction():
            yield conn


async def register_data_units(
    conn: Executor, tenant: str, collection_id: uuid.UUID, units: Sequence[NewDataUnit]
) -> RegisteredDataUnits:
    """Store data units a user registers by hand (no upload run), keyed by unit key within
    the collection: a key the collection has a unit without a run for updates that unit,
    any other key is a new unit. All in one transaction, so a batch is stored whole or not.

    `UNIQUE (upload_run_id, unit_key)` cannot do this: NULL run ids are distinct in
    PostgreSQL, so `upsert_data_units` without a run adds a row per call. Registrations of
    one collection are serialised instead by a lock on its row (`FOR NO KEY UPDATE`, which
    the foreign-key checks of uploads writing units, `FOR KEY SHARE`, do not wait for), so
    two concurrent requests with the same new key still make one unit. Should a key have
    several units without a run (written by `upsert_data_units` directly), the oldest is
    updated. Units of upload runs are never matched: they belong to their run.

    `CatalogNotFoundError` when the collection is not the tenant's; `DataUnitConflictError`
    when a unit key repeats in the batch.
    """
    keys = [unit.unit_key for unit in units]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})[:5]
        raise DataUnitConflictError(f"unit keys repeat in one batch: {', '.join(repeated)}")
    async with _transaction(conn) as tx:
        locked = await tx.fetchval(
            """
            SELECT id FROM catalog.data_collections WHERE id = $2 AND tenant = $1
            FOR NO KEY UPDATE
            """,
            tenant,
            collection_id,
            timeout=_TIMEOUT_S,
        )
        if locked is None:
            raise CatalogNotFoundError(f"data collection {collection_id} not found")
        # Served by the UNIQUE (upload_run_id, unit_key) index: btree indexes keep NULLs.
        existing: dict[str, int] = {
            row["unit_key"]: row["id"]
            for row in await tx.fetch(
                """
                SELECT DISTINCT ON (unit_key) unit_key, id FROM catalog.data_units
                WHERE upload_run_id IS NULL AND unit_key = ANY($3::text[])
                  AND tenant = $1 AND data_collection_id = $2
                ORDER BY unit_key, id
                """,
                tenant,
                collection_id,
                keys,
                timeout=_TIMEOUT_S,
            )
        }
        known = [unit for unit in units if unit.unit_key in existing]
        updated = 0
        if known:
            # Equal files and meta are left alone, so a repeated request changes nothing,
            # not even updated_at.
            status: str = await tx.execute(
                """
                UPDATE catalog.data_units AS d
                SET files = u.files::jsonb, meta = u.meta::jsonb, updated_at = now()
                FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(id, files, meta)
                WHERE d.id = u.id AND d.tenant = $1
                  AND (d.files <> u.files::jsonb OR d.meta <> u.meta::jsonb)
                """,
                tenant,
                [existing[unit.unit_key] for unit in known],
                [_json(dict(unit.files)) for unit in known],
                [_json(unit.meta) for unit in known],
                timeout=_TIMEOUT_S,
            )
            updated = int(status.rsplit(" ", 1)[-1])
        new = [unit for unit in units if unit.unit_key not in existing]
        new_ids = await upsert_data_units(tx, tenant, collection_id, None, new)
    ids = dict(existing) | dict(zip((unit.unit_key for unit in new), new_ids, strict=True))
    return RegisteredDataUnits(
        ids=tuple(ids[key] for key in keys), created=len(new_ids), updated=updated
    )


async def delete_data_units_of_run(conn: Executor, tenant: str, run_id: uuid.UUID) -> int:
    """Delete the data units the run stored (rollback of an upload); how many."""
    status: str = await conn.execute(
        "DELETE FROM catalog.data_units WHERE tenant = $1 AND upload_run_id = $2",
        tenant,
        run_id,
        timeout=_TIMEOUT_S,
    )
    return int(status.rsplit(" ", 1)[-1])


async def get_data_unit(conn: Executor, tenant: str, unit_id: int) -> DataUnitRow | None:
    """The tenant's data unit, or None (also for another tenant's)."""
    row = await fetch_tenant_row(conn, "data_units", _UNIT_COLUMNS, tenant, unit_id)
    return None if row is None else _unit(row)


async def list_data_units(
    conn: Executor,
    tenant: str,
    collection_id: uuid.UUID,
    *,
    after_id: int = 0,
    limit: int = 100,
    upload_run_id: uuid.UUID | None = None,
    unit_ids: Sequence[int] | None = None,
    meta: Mapping[str, Any] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[DataUnitRow]:
    """The collection's data units in id order after `after_id`, optionally only of one run,
    only `unit_ids`, with `meta` containing the given keys and values, created in
    [created_after, created_before)."""
    rows = await conn.fetch(
        f"""
        SELECT {_UNIT_COLUMNS} FROM catalog.data_units
        WHERE tenant = $1 AND data_collection_id = $2 AND id > $3
          AND ($4::uuid IS NULL OR upload_run_id = $4)
          AND ($6::text IS NULL OR meta @> $6::text::jsonb)
          AND ($7::timestamptz IS NULL OR created_at >= $7)
          AND ($8::timestamptz IS NULL OR created_at < $8)
          AND ($9::bigint[] IS NULL OR id = ANY($9))
        ORDER BY id LIMIT $5
        """,
        tenant,
        collection_id,
        after_id,
        upload_run_id,
        limit,
        None if meta is None else _json(meta),
        created_after,
        created_before,
        None if unit_ids is None else list(unit_ids),
        timeout=_TIMEOUT_S,
    )
    return [_unit(row) for row in rows]
