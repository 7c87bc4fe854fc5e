"""Typed data access to `catalog.assignments`: an annotator's work on a task, scoped by the
tenant each function takes first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from runmesh.catalog.errors import CatalogNotFoundError
from runmesh.catalog.label_classes import check_classes
from runmesh.catalog.models import AssignmentStatus
from runmesh.catalog.queries import TIMEOUT_S, Executor
from runmesh.catalog.tasks import task_label_schema
from runmesh.core.events import JsonObject
from runmesh.dm import DMData

_ASSIGNMENT_COLUMNS = "id, tenant, task_id, status, data::text AS data, created_at"


@dataclass(slots=True, frozen=True)
class AssignmentRow:
    """A `catalog.assignments` row; `data` is the DM document."""

    id: int
    tenant: str
    task_id: int
    status: AssignmentStatus
    data: JsonObject
    created_at: datetime


def _assignment(row: Mapping[str, Any]) -> AssignmentRow:
    return AssignmentRow(
        id=row["id"],
        tenant=row["tenant"],
        task_id=row["task_id"],
        status=row["status"],
        data=orjson.loads(row["data"]),
        created_at=row["created_at"],
    )


async def create_assignment(
    conn: Executor,
    tenant: str,
    task_id: int,
    data: DMData,
    *,
    status: AssignmentStatus = "submitted",
) -> AssignmentRow:
    """Store an annotator's work on the task. `CatalogNotFoundError` when the tenant has no
    such task; `UnknownClassError` when the annotations name a class that the project's label
    schema lacks."""
    found = await task_label_schema(conn, tenant, task_id)
    if found is None:
        raise CatalogNotFoundError(f"task {task_id} not found")
    check_classes([(("data",), data)], found[1], found[0])
    row = await conn.fetchrow(
        f"""
        INSERT INTO catalog.assignments (tenant, task_id, status, data)
        SELECT $1, t.id, $3, $4::text::jsonb FROM catalog.tasks AS t
        WHERE t.id = $2 AND t.tenant = $1
        RETURNING {_ASSIGNMENT_COLUMNS}
        """,
        tenant,
        task_id,
        status,
        data.model_dump_json(),
        timeout=TIMEOUT_S,
    )
    if row is None:  # the task went away between the two statements
        raise CatalogNotFoundError(f"task {task_id} not found")
    return _assignment(row)


async def list_assignments(
    conn: Executor, tenant: str, task_id: int, *, after_id: int = 0, limit: int = 100
) -> list[AssignmentRow]:
    """The task's assignments in id order after `after_id`."""
    rows = await conn.fetch(
        f"""
        SELECT {_ASSIGNMENT_COLUMNS} FROM catalog.assignments
        WHERE task_id = $1 AND tenant = $2 AND id > $3
        ORDER BY id LIMIT $4
        """,
        task_id,
        tenant,
        after_id,
        limit,
        timeout=TIMEOUT_S,
    )
    return [_assignment(row) for row in rows]
