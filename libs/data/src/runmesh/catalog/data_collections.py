"""Typed data access to `catalog.data_collections` and the kinds of file their units hold,
scoped by the tenant each function takes first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from runmesh.catalog.errors import DuplicateNameError
from runmesh.catalog.models import DataCollectionCreate
from runmesh.catalog.queries import (
    TIMEOUT_S,
    Executor,
    fetch_newest_first,
    fetch_tenant_row,
    to_json,
)
from runmesh.core.events import JsonObject

_COLLECTION_COLUMNS = (
    "id, tenant, name, description, file_specifications::text AS file_specifications,"
    " data_unit_meta_schema::text AS data_unit_meta_schema, created_at"
)


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
        to_json([spec.model_dump(mode="json") for spec in collection.file_specifications]),
        None
        if collection.data_unit_meta_schema is None
        else to_json(collection.data_unit_meta_schema),
        timeout=TIMEOUT_S,
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
