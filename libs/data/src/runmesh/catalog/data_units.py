"""Typed data access to `catalog.data_units`: stored by upload runs (idempotent per run and
unit key) or registered by hand, scoped by the tenant each function takes first."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, cast

import asyncpg
import orjson

from runmesh.catalog.data_collections import get_collection
from runmesh.catalog.errors import CatalogNotFoundError, DataUnitConflictError
from runmesh.catalog.queries import TIMEOUT_S, Executor, fetch_tenant_row, to_json
from runmesh.core.events import JsonObject

_UNIT_COLUMNS = (
    "id, tenant, data_collection_id, unit_key, files::text AS files, meta::text AS meta,"
    " upload_run_id, created_at, updated_at"
)


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
        [to_json(dict(unit.files)) for unit in units],
        [to_json(unit.meta) for unit in units],
        timeout=TIMEOUT_S,
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
            timeout=TIMEOUT_S,
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
                timeout=TIMEOUT_S,
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
                [to_json(dict(unit.files)) for unit in known],
                [to_json(unit.meta) for unit in known],
                timeout=TIMEOUT_S,
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
        timeout=TIMEOUT_S,
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
        None if meta is None else to_json(meta),
        created_after,
        created_before,
        None if unit_ids is None else list(unit_ids),
        timeout=TIMEOUT_S,
    )
    return [_unit(row) for row in rows]
