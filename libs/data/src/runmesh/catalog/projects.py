"""Typed data access to `catalog.projects`, each created only over a data collection of the
same tenant, scoped by the tenant each function takes first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runmesh.catalog.errors import DuplicateNameError, InvalidReferenceError
from runmesh.catalog.models import AnnotationType, LabelSchema, ProjectCreate
from runmesh.catalog.queries import (
    TIMEOUT_S,
    Executor,
    fetch_newest_first,
    fetch_tenant_row,
)

_PROJECT_COLUMNS = (
    "id, tenant, name, description, data_collection_id, annotation_type,"
    " label_schema::text AS label_schema, created_at"
)


@dataclass(slots=True, frozen=True)
class ProjectRow:
    """A `catalog.projects` row."""

    id: uuid.UUID
    tenant: str
    name: str
    description: str
    data_collection_id: uuid.UUID
    annotation_type: AnnotationType
    label_schema: LabelSchema
    created_at: datetime


def _project(row: Mapping[str, Any]) -> ProjectRow:
    return ProjectRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        description=row["description"],
        data_collection_id=row["data_collection_id"],
        annotation_type=row["annotation_type"],
        label_schema=LabelSchema.model_validate_json(row["label_schema"]),
        created_at=row["created_at"],
    )


async def create_project(conn: Executor, tenant: str, project: ProjectCreate) -> ProjectRow:
    """Store a validated project; `DuplicateNameError` when the tenant has its name,
    `InvalidReferenceError` when the data collection is not the tenant's."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO catalog.projects
            (id, tenant, name, description, data_collection_id, annotation_type, label_schema)
        SELECT $1, $2, $3, $4, c.id, $6, $7::text::jsonb
        FROM catalog.data_collections AS c WHERE c.id = $5 AND c.tenant = $2
        ON CONFLICT (tenant, name) DO NOTHING
        RETURNING {_PROJECT_COLUMNS}
        """,
        uuid.uuid4(),
        tenant,
        project.name,
        project.description,
        project.data_collection_id,
        project.annotation_type,
        project.label_schema.model_dump_json(),
        timeout=TIMEOUT_S,
    )
    if row is not None:
        return _project(row)
    owned = await conn.fetchval(
        "SELECT true FROM catalog.data_collections WHERE id = $1 AND tenant = $2",
        project.data_collection_id,
        tenant,
        timeout=TIMEOUT_S,
    )
    if not owned:
        raise InvalidReferenceError(
            f"data collection {project.data_collection_id} not found",
            field="data_collection_id",
            ids=[project.data_collection_id],
        )
    raise DuplicateNameError(f"a project named {project.name!r} already exists")


async def get_project(conn: Executor, tenant: str, project_id: uuid.UUID) -> ProjectRow | None:
    """The tenant's project, or None (also for another tenant's)."""
    row = await fetch_tenant_row(conn, "projects", _PROJECT_COLUMNS, tenant, project_id)
    return None if row is None else _project(row)


async def list_projects(
    conn: Executor,
    tenant: str,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[ProjectRow]:
    """The tenant's projects, newest first, after the position `before` (created_at, id)."""
    rows = await fetch_newest_first(conn, "projects", _PROJECT_COLUMNS, tenant, before, limit)
    return [_project(row) for row in rows]
