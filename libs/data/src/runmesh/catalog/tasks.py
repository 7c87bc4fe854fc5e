"""Typed data access to `catalog.tasks`: one per data unit of a project, holding its
annotations (a DM document whose class names the project's label schema has), scoped by the
tenant each function takes first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from runmesh.catalog.errors import (
    CatalogNotFoundError,
    InvalidReferenceError,
    UnknownClassError,
)
from runmesh.catalog.label_classes import MAX_PROBLEMS, check_classes, shown
from runmesh.catalog.models import LabelSchema, TaskStatus
from runmesh.catalog.projects import get_project
from runmesh.catalog.queries import TIMEOUT_S, Executor, fetch_tenant_row
from runmesh.core.events import JsonObject
from runmesh.dm import DMData

_TASK_COLUMNS = (
    "id, tenant, project_id, data_unit_id, status, data::text AS data, annotated_by_run_id,"
    " created_at, updated_at"
)


@dataclass(slots=True, frozen=True)
class TaskRow:
    """A `catalog.tasks` row; `data` is the DM document (parsed JSON), null until annotated."""

    id: int
    tenant: str
    project_id: uuid.UUID
    data_unit_id: int
    status: TaskStatus
    data: JsonObject | None
    annotated_by_run_id: uuid.UUID | None  # the run that wrote `data`; None: the API
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True, frozen=True)
class CreatedTasks:
    """The tasks of the data units asked for, in their order, and how many are new."""

    task_ids: tuple[int, ...]
    created: int


def _task(row: Mapping[str, Any]) -> TaskRow:
    return TaskRow(
        id=row["id"],
        tenant=row["tenant"],
        project_id=row["project_id"],
        data_unit_id=row["data_unit_id"],
        status=row["status"],
        data=None if row["data"] is None else orjson.loads(row["data"]),
        annotated_by_run_id=row["annotated_by_run_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create_tasks(
    conn: Executor, tenant: str, project_id: uuid.UUID, data_unit_ids: Sequence[int]
) -> CreatedTasks:
    """Make a task of each data unit that has none in the project yet; the task ids of all the
    units, in the order given (a repeated unit gets the same task).

    Safe to repeat, also concurrently: a unit that has a task keeps it. Nothing is stored and
    `CatalogNotFoundError` is raised when the project is not the tenant's;
    `InvalidReferenceError` (field `data_unit_ids`) when a unit is not in the project's data
    collection.
    """
    wanted = list(dict.fromkeys(data_unit_ids))
    if not wanted:
        if await get_project(conn, tenant, project_id) is None:
            raise CatalogNotFoundError(f"project {project_id} not found")
        return CreatedTasks(task_ids=(), created=0)
    found = await conn.fetch(
        """
        SELECT u.id FROM catalog.projects AS p
        LEFT JOIN catalog.data_units AS u
            ON u.data_collection_id = p.data_collection_id AND u.tenant = p.tenant
           AND u.id = ANY($3::bigint[])
        WHERE p.id = $2 AND p.tenant = $1
        """,
        tenant,
        project_id,
        wanted,
        timeout=TIMEOUT_S,
    )
    if not found:
        raise CatalogNotFoundError(f"project {project_id} not found")
    present = {row["id"] for row in found}
    missing = [unit for unit in wanted if unit not in present]
    if missing:
        raise InvalidReferenceError(
            f"data units not in the data collection of project {project_id}: {shown(missing)}",
            field="data_unit_ids",
            ids=missing[:MAX_PROBLEMS],
        )
    # The outer SELECT sees the table as it was before the INSERT, so every unit comes back
    # exactly once: new from `added`, existing from the table.
    rows = await conn.fetch(
        """
        WITH added AS (
            INSERT INTO catalog.tasks (tenant, project_id, data_unit_id)
            SELECT $1, $2, u.id FROM unnest($3::bigint[]) WITH ORDINALITY AS u(id, ord)
            ORDER BY u.ord
            ON CONFLICT (project_id, data_unit_id) DO NOTHING
            RETURNING id, data_unit_id
        )
        SELECT id, data_unit_id, true AS created FROM added
        UNION ALL
        SELECT id, data_unit_id, false FROM catalog.tasks
        WHERE project_id = $2 AND data_unit_id = ANY($3::bigint[])
        """,
        tenant,
        project_id,
        wanted,
        timeout=TIMEOUT_S,
    )
    by_unit = {row["data_unit_id"]: row["id"] for row in rows}
    if len(by_unit) < len(wanted):
        # A concurrent call committed some of these tasks after this statement's snapshot was
        # taken: the insert skipped them and the SELECT could not see them yet; now it can.
        late = await conn.fetch(
            "SELECT id, data_unit_id FROM catalog.tasks"
            " WHERE project_id = $1 AND data_unit_id = ANY($2::bigint[])",
            project_id,
            [unit for unit in wanted if unit not in by_unit],
            timeout=TIMEOUT_S,
        )
        by_unit.update((row["data_unit_id"], row["id"]) for row in late)
    return CreatedTasks(
        task_ids=tuple(by_unit[unit] for unit in data_unit_ids),
        created=sum(1 for row in rows if row["created"]),
    )


async def get_task(conn: Executor, tenant: str, task_id: int) -> TaskRow | None:
    """The tenant's task, or None (also for another tenant's)."""
    row = await fetch_tenant_row(conn, "tasks", _TASK_COLUMNS, tenant, task_id)
    return None if row is None else _task(row)


async def list_tasks(
    conn: Executor,
    tenant: str,
    *,
    project_id: uuid.UUID | None = None,
    status: TaskStatus | None = None,
    annotated_by_run_id: uuid.UUID | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[TaskRow]:
    """The tenant's tasks in id order after `after_id`, optionally of one project, status
    and annotating run."""
    rows = await conn.fetch(
        f"""
        SELECT {_TASK_COLUMNS} FROM catalog.tasks
        WHERE tenant = $1 AND id > $2
          AND ($3::uuid IS NULL OR project_id = $3) AND ($4::text IS NULL OR status = $4)
          AND ($5::uuid IS NULL OR annotated_by_run_id = $5)
        ORDER BY id LIMIT $6
        """,
        tenant,
        after_id,
        project_id,
        status,
        annotated_by_run_id,
        limit,
        timeout=TIMEOUT_S,
    )
    return [_task(row) for row in rows]


async def task_label_schema(
    conn: Executor, tenant: str, task_id: int
) -> tuple[uuid.UUID, LabelSchema] | None:
    """The id and label schema of the task's project, or None when the tenant has no such task."""
    row = await conn.fetchrow(
        """
        SELECT p.id, p.label_schema::text AS label_schema
        FROM catalog.tasks AS t JOIN catalog.projects AS p ON p.id = t.project_id
        WHERE t.id = $1 AND t.tenant = $2
        """,
        task_id,
        tenant,
        timeout=TIMEOUT_S,
    )
    if row is None:
        return None
    return row["id"], LabelSchema.model_validate_json(row["label_schema"])


async def set_task_data(
    conn: Executor,
    tenant: str,
    task_id: int,
    data: DMData | None,
    *,
    status: TaskStatus | None = None,
    run_id: uuid.UUID | None = None,
) -> TaskRow | None:
    """Replace the task's annotations (None clears them) and, when given, its status; the
    updated task, or None when the tenant has no such task. `UnknownClassError` when the
    annotations name a class that the project's label schema lacks (nothing is stored).
    `run_id` is the run writing them (None: a person, through the API)."""
    found = await task_label_schema(conn, tenant, task_id)
    if found is None:
        return None
    if data is not None:
        check_classes([((), data)], found[1], found[0])
    row = await conn.fetchrow(
        f"""
        UPDATE catalog.tasks
        SET data = $3::text::jsonb, status = coalesce($4, status), annotated_by_run_id = $5,
            updated_at = now()
        WHERE id = $1 AND tenant = $2
        RETURNING {_TASK_COLUMNS}
        """,
        task_id,
        tenant,
        None if data is None else data.model_dump_json(),
        status,
        run_id,
        timeout=TIMEOUT_S,
    )
    return None if row is None else _task(row)


async def set_tasks_data(
    conn: Executor,
    tenant: str,
    project_id: uuid.UUID,
    updates: Sequence[tuple[int, DMData | None]],
    *,
    run_id: uuid.UUID | None,
) -> tuple[set[int], dict[int, str]]:
    """Write many tasks of one project in one statement: (the ids written, task id → why
    not). A document naming a class the label schema lacks is refused, not stored; a task
    that is not the tenant's project's is left out."""
    project = await get_project(conn, tenant, project_id)
    if project is None:
        return set(), {task_id: f"project {project_id} no longer exists" for task_id, _ in updates}
    refused: dict[int, str] = {}
    rows: list[tuple[int, str | None]] = []
    for task_id, data in updates:
        if data is not None:
            try:
                check_classes([((), data)], project.label_schema, project_id)
            except UnknownClassError as exc:
                refused[task_id] = str(exc)
                continue
        rows.append((task_id, None if data is None else data.model_dump_json()))
    if not rows:
        return set(), refused
    written = await conn.fetch(
        """
        UPDATE catalog.tasks AS t
        SET data = u.data::jsonb, annotated_by_run_id = $5, updated_at = now()
        FROM unnest($3::bigint[], $4::text[]) AS u (id, data)
        WHERE t.id = u.id AND t.tenant = $1 AND t.project_id = $2
        RETURNING t.id
        """,
        tenant,
        project_id,
        [task_id for task_id, _ in rows],
        [data for _, data in rows],
        run_id,
        timeout=TIMEOUT_S,
    )
    done = {row["id"] for row in written}
    for task_id, _ in rows:
        if task_id not in done:
            refused[task_id] = f"task {task_id} no longer exists"
    return done, refused


async def set_task_status(
    conn: Executor, tenant: str, task_id: int, status: TaskStatus
) -> TaskRow | None:
    """Set the task's status; the updated task, or None when the tenant has no such task."""
    row = await conn.fetchrow(
        f"""
        UPDATE catalog.tasks SET status = $3, updated_at = now()
        WHERE id = $1 AND tenant = $2
        RETURNING {_TASK_COLUMNS}
        """,
        task_id,
        tenant,
        status,
        timeout=TIMEOUT_S,
    )
    return None if row is None else _task(row)
