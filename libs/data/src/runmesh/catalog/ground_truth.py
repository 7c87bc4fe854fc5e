"""Typed data access to ground-truth datasets, their versions and items, each function
scoped by the tenant it takes first."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from runmesh.catalog.annotation import check_classes, get_project
from runmesh.catalog.errors import (
    CatalogNotFoundError,
    DuplicateNameError,
    InvalidReferenceError,
)
from runmesh.catalog.models import (
    GroundTruthCategory,
    GroundTruthDatasetCreate,
    GroundTruthItemIn,
)
from runmesh.catalog.repository import Executor, fetch_newest_first, fetch_tenant_row
from runmesh.core.events import JsonObject

_TIMEOUT_S = 30.0
# Ground-truth items go in with one statement per chunk: one round trip each, and arrays of a
# size PostgreSQL and asyncpg handle without trouble.
_INSERT_CHUNK = 5_000
# An error lists at most this many missing ids; more would bury the first.
_MAX_IDS = 100

_DATASET_COLUMNS = "id, tenant, name, project_id, description, created_at"
_VERSION_COLUMNS = (
    "v.id, v.tenant, v.dataset_id, v.version, v.created_at,"
    " (SELECT count(*) FROM catalog.ground_truth_items AS i WHERE i.version_id = v.id)"
    " AS item_count"
)
_ITEM_COLUMNS = "id, tenant, version_id, data_unit_id, category, data::text AS data, created_at"


# -- rows ------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class GroundTruthDatasetRow:
    """A `catalog.ground_truth_datasets` row."""

    id: uuid.UUID
    tenant: str
    name: str
    project_id: uuid.UUID | None
    description: str
    created_at: datetime


@dataclass(slots=True, frozen=True)
class GroundTruthVersionRow:
    """A `catalog.ground_truth_versions` row and how many items it has."""

    id: uuid.UUID
    tenant: str
    dataset_id: uuid.UUID
    version: str
    item_count: int
    created_at: datetime


@dataclass(slots=True, frozen=True)
class GroundTruthItemRow:
    """A `catalog.ground_truth_items` row; `data` is the DM document."""

    id: int
    tenant: str
    version_id: uuid.UUID
    data_unit_id: int | None
    category: GroundTruthCategory | None
    data: JsonObject
    created_at: datetime


def _dataset(row: Mapping[str, Any]) -> GroundTruthDatasetRow:
    return GroundTruthDatasetRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        project_id=row["project_id"],
        description=row["description"],
        created_at=row["created_at"],
    )


def _version(row: Mapping[str, Any]) -> GroundTruthVersionRow:
    return GroundTruthVersionRow(
        id=row["id"],
        tenant=row["tenant"],
        dataset_id=row["dataset_id"],
        version=row["version"],
        item_count=row["item_count"],
        created_at=row["created_at"],
    )


def _item(row: Mapping[str, Any]) -> GroundTruthItemRow:
    return GroundTruthItemRow(
        id=row["id"],
        tenant=row["tenant"],
        version_id=row["version_id"],
        data_unit_id=row["data_unit_id"],
        category=row["category"],
        data=orjson.loads(row["data"]),
        created_at=row["created_at"],
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


def _shown(values: Sequence[object]) -> str:
    return ", ".join(repr(value) for value in values[:5]) + (" ..." if len(values) > 5 else "")


# -- datasets, versions, items ---------------------------------------------------------------


async def create_ground_truth_dataset(
    conn: Executor, tenant: str, dataset: GroundTruthDatasetCreate
) -> GroundTruthDatasetRow:
    """Store a ground-truth dataset; `DuplicateNameError` when the tenant has its name,
    `InvalidReferenceError` when its project is not the tenant's."""
    project_id = dataset.project_id
    if project_id is not None and await get_project(conn, tenant, project_id) is None:
        raise InvalidReferenceError(
            f"project {project_id} not found", field="project_id", ids=[project_id]
        )
    row = await conn.fetchrow(
        f"""
        INSERT INTO catalog.ground_truth_datasets (id, tenant, name, project_id, description)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant, name) DO NOTHING
        RETURNING {_DATASET_COLUMNS}
        """,
        uuid.uuid4(),
        tenant,
        dataset.name,
        dataset.project_id,
        dataset.description,
        timeout=_TIMEOUT_S,
    )
    if row is None:
        raise DuplicateNameError(f"a ground-truth dataset named {dataset.name!r} already exists")
    return _dataset(row)


async def get_ground_truth_dataset(
    conn: Executor, tenant: str, dataset_id: uuid.UUID
) -> GroundTruthDatasetRow | None:
    """The tenant's ground-truth dataset, or None (also for another tenant's)."""
    row = await fetch_tenant_row(
        conn, "ground_truth_datasets", _DATASET_COLUMNS, tenant, dataset_id
    )
    return None if row is None else _dataset(row)


async def list_ground_truth_datasets(
    conn: Executor,
    tenant: str,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[GroundTruthDatasetRow]:
    """The tenant's ground-truth datasets, newest first, after the position `before`."""
    rows = await fetch_newest_first(
        conn, "ground_truth_datasets", _DATASET_COLUMNS, tenant, before, limit
    )
    return [_dataset(row) for row in rows]


async def create_ground_truth_version(
    conn: Executor,
    tenant: str,
    dataset_id: uuid.UUID,
    version: str,
    items: Sequence[GroundTruthItemIn],
) -> GroundTruthVersionRow:
    """Store a version of the dataset with all its items, in one transaction (all or nothing).

    `CatalogNotFoundError` when the tenant has no such dataset; `DuplicateNameError` when the
    dataset has the version; `InvalidReferenceError` (field `items`) when an item's data unit
    is not the tenant's; `UnknownClassError` (paths start `("items", k, "data")`) when the
    dataset has a project and an item names a class outside its label schema.
    """
    dataset = await get_ground_truth_dataset(conn, tenant, dataset_id)
    if dataset is None:
        raise CatalogNotFoundError(f"ground-truth dataset {dataset_id} not found")
    if dataset.project_id is not None:
        project = await get_project(conn, tenant, dataset.project_id)
        if project is not None:
            check_classes(
                [(("items", k, "data"), item.data) for k, item in enumerate(items)],
                project.label_schema,
                project.id,
            )
    units = list(dict.fromkeys(i.data_unit_id for i in items if i.data_unit_id is not None))
    if units:
        present = {
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM catalog.data_units WHERE tenant = $1 AND id = ANY($2::bigint[])",
                tenant,
                units,
                timeout=_TIMEOUT_S,
            )
        }
        missing = [unit for unit in units if unit not in present]
        if missing:
            raise InvalidReferenceError(
                f"data units not found: {_shown(missing)}", field="items", ids=missing[:_MAX_IDS]
            )
    async with _transaction(conn) as tx:
        row = await tx.fetchrow(
            """
            INSERT INTO catalog.ground_truth_versions (id, tenant, dataset_id, version)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (dataset_id, version) DO NOTHING
            RETURNING id, tenant, dataset_id, version, created_at
            """,
            uuid.uuid4(),
            tenant,
            dataset_id,
            version,
            timeout=_TIMEOUT_S,
        )
        if row is None:
            raise DuplicateNameError(
                f"ground-truth dataset {dataset_id} already has a version {version!r}"
            )
        for start in range(0, len(items), _INSERT_CHUNK):
            chunk = items[start : start + _INSERT_CHUNK]
            await tx.execute(
                """
                INSERT INTO catalog.ground_truth_items
                    (tenant, version_id, data_unit_id, category, data)
                SELECT $1, $2, i.data_unit_id, i.category, i.data::jsonb
                FROM unnest($3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY
                    AS i(data_unit_id, category, data, ord)
                ORDER BY i.ord
                """,
                tenant,
                row["id"],
                [item.data_unit_id for item in chunk],
                [item.category for item in chunk],
                [item.data.model_dump_json() for item in chunk],
                timeout=_TIMEOUT_S,
            )
    return _version(dict(row) | {"item_count": len(items)})


async def get_ground_truth_version(
    conn: Executor, tenant: str, version_id: uuid.UUID
) -> GroundTruthVersionRow | None:
    """The tenant's ground-truth version, or None (also for another tenant's)."""
    row = await conn.fetchrow(
        f"SELECT {_VERSION_COLUMNS} FROM catalog.ground_truth_versions AS v"
        " WHERE v.id = $1 AND v.tenant = $2",
        version_id,
        tenant,
        timeout=_TIMEOUT_S,
    )
    return None if row is None else _version(row)


async def list_ground_truth_versions(
    conn: Executor,
    tenant: str,
    dataset_id: uuid.UUID,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[GroundTruthVersionRow]:
    """The dataset's versions, newest first, after the position `before`."""
    rows = await conn.fetch(
        f"""
        SELECT {_VERSION_COLUMNS} FROM catalog.ground_truth_versions AS v
        WHERE v.tenant = $1 AND v.dataset_id = $2
          AND ($3::timestamptz IS NULL OR (v.created_at, v.id) < ($3, $4::uuid))
        ORDER BY v.created_at DESC, v.id DESC LIMIT $5
        """,
        tenant,
        dataset_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
        timeout=_TIMEOUT_S,
    )
    return [_version(row) for row in rows]


async def list_ground_truth_items(
    conn: Executor,
    tenant: str,
    version_id: uuid.UUID,
    *,
    category: GroundTruthCategory | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[GroundTruthItemRow]:
    """The version's items in id order after `after_id`, optionally of one category."""
    rows = await conn.fetch(
        f"""
        SELECT {_ITEM_COLUMNS} FROM catalog.ground_truth_items
        WHERE version_id = $1 AND tenant = $2 AND id > $3
          AND ($4::text IS NULL OR category = $4)
        ORDER BY id LIMIT $5
        """,
        version_id,
        tenant,
        after_id,
        category,
        limit,
        timeout=_TIMEOUT_S,
    )
    return [_item(row) for row in rows]
