"""Typed data access to projects, tasks and assignments, each function scoped by the tenant
it takes first.

Rows are created only under parents of the same tenant, and annotations only with class
names of the project's label schema. `conn` is an asyncpg connection or pool, as in
`repository`; JSON goes in and out as text.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from runmesh.common.catalog.errors import (
    CatalogNotFoundError,
    ClassProblem,
    DuplicateNameError,
    InvalidReferenceError,
    UnknownClassError,
)
from runmesh.common.catalog.export_items import (
    ExportItem,
    count_export_items,
    export_classes,
    export_label_classes,
    stream_export_items,
)
from runmesh.common.catalog.models import (
    AnnotationType,
    AssignmentStatus,
    LabelSchema,
    ProjectCreate,
    TaskStatus,
)
from runmesh.common.catalog.repository import Executor, fetch_newest_first, fetch_tenant_row
from runmesh.common.dm import DMData
from runmesh.common.events import JsonObject

# The export readers live in `export_items`; exporters find them (and the errors they raise)
# here as well, next to the tables they read.
__all__ = [
    "AssignmentRow",
    "CatalogNotFoundError",
    "CreatedTasks",
    "ExportItem",
    "InvalidReferenceError",
    "ProjectRow",
    "TaskRow",
    "UnknownClassError",
    "check_classes",
    "count_export_items",
    "create_assignment",
    "create_project",
    "create_tasks",
    "export_classes",
    "export_label_classes",
    "get_project",
    "get_task",
    "list_assignments",
    "list_projects",
    "list_tasks",
    "set_task_data",
    "set_task_status",
    "stream_export_items",
    "unknown_classes",
]

_TIMEOUT_S = 30.0
# An error lists at most this many unknown class names or missing ids; more would bury the first.
_MAX_PROBLEMS = 100

_PROJECT_COLUMNS = (
    "id, tenant, name, description, data_collection_id, annotation_type,"
    " label_schema::text AS label_schema, created_at"
)
_TASK_COLUMNS = (
    "id, tenant, project_id, data_unit_id, status, data::text AS data, annotated_by_run_id,"
    " created_at, updated_at"
)
_ASSIGNMENT_COLUMNS = "id, tenant, task_id, status, data::text AS data, created_at"


# -- rows ------------------------------------------------------------------------------------


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


@dataclass(slots=True, frozen=True)
class AssignmentRow:
    """A `catalog.assignments` row; `data` is the DM document."""

    id: int
    tenant: str
    task_id: int
    status: AssignmentStatus
    data: JsonObject
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


def _assignment(row: Mapping[str, Any]) -> AssignmentRow:
    return AssignmentRow(
        id=row["id"],
        tenant=row["tenant"],
        task_id=row["task_id"],
        status=row["status"],
        data=orjson.loads(row["data"]),
        created_at=row["created_at"],
    )


def _shown(values: Sequence[object]) -> str:
    return ", ".join(repr(value) for value in values[:5]) + (" ..." if len(values) > 5 else "")


# -- label schemas ---------------------------------------------------------------------------


def unknown_classes(data: DMData, known: Collection[str]) -> list[ClassProblem]:
    """Where the document names a class that is not in `known`, in document order (at most
    100): `(("images", 0, "annotations", 2, "class_name"), "dog")`."""
    problems: list[ClassProblem] = []
    for i, image in enumerate(data.images):
        for j, annotation in enumerate(image.annotations):
            if annotation.class_name not in known:
                path = ("images", i, "annotations", j, "class_name")
                problems.append((path, annotation.class_name))
                if len(problems) == _MAX_PROBLEMS:
                    return problems
    return problems


def check_classes(
    documents: Sequence[tuple[tuple[str | int, ...], DMData]],
    schema: LabelSchema,
    project_id: uuid.UUID,
) -> None:
    """`UnknownClassError` when a document (with the path it is at) names a class that the
    project's label schema lacks."""
    known = {label.name for label in schema.classes}
    problems: list[ClassProblem] = []
    for prefix, data in documents:
        problems += [((*prefix, *path), name) for path, name in unknown_classes(data, known)]
        if len(problems) >= _MAX_PROBLEMS:
            break
    if problems:
        names = list(dict.fromkeys(name for _, name in problems))
        raise UnknownClassError(
            f"class names not in the label schema of project {project_id}: {_shown(names)}",
            problems[:_MAX_PROBLEMS],
        )


# -- projects --------------------------------------------------------------------------------


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
        timeout=_TIMEOUT_S,
    )
    if row is not None:
        return _project(row)
    owned = await conn.fetchval(
        "SELECT true FROM catalog.data_collections WHERE id = $1 AND tenant = $2",
        project.data_collection_id,
        tenant,
        timeout=_TIMEOUT_S,
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


# -- tasks -----------------------------------------------------------------------------------


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
        timeout=_TIMEOUT_S,
    )
    if not found:
        raise CatalogNotFoundError(f"project {project_id} not found")
    present = {row["id"] for row in found}
    missing = [unit for unit in wanted if unit not in present]
    if missing:
        raise InvalidReferenceError(
            f"data units not in the data collection of project {project_id}: {_shown(missing)}",
            field="data_unit_ids",
            ids=missing[:_MAX_PROBLEMS],
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
        timeout=_TIMEOUT_S,
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
            timeout=_TIMEOUT_S,
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
        timeout=_TIMEOUT_S,
    )
    return [_task(row) for row in rows]


async def _task_label_schema(
    conn: Executor, tenant: str, task_id: int
) -> tuple[uuid.UUID, LabelSchema] | None:
    row = await conn.fetchrow(
        """
        SELECT p.id, p.label_schema::text AS label_schema
        FROM catalog.tasks AS t JOIN catalog.projects AS p ON p.id = t.project_id
        WHERE t.id = $1 AND t.tenant = $2
        """,
        task_id,
        tenant,
        timeout=_TIMEOUT_S,
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
    found = await _task_label_schema(conn, tenant, task_id)
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
        timeout=_TIMEOUT_S,
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
        timeout=_TIMEOUT_S,
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
        timeout=_TIMEOUT_S,
    )
    return None if row is None else _task(row)


# -- assignments -----------------------------------------------------------------------------


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
    found = await _task_label_schema(conn, tenant, task_id)
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
        timeout=_TIMEOUT_S,
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
        timeout=_TIMEOUT_S,
    )
    return [_assignment(row) for row in rows]
