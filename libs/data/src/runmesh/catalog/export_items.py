"""What an export reads from the catalog: tasks, assignments or ground-truth items with their
data unit's files, streamed through a server-side cursor so memory stays flat in the count."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import orjson

from runmesh.catalog.errors import CatalogNotFoundError
from runmesh.catalog.models import (
    AssignmentExportFilter,
    AssignmentStatus,
    ExportFilter,
    ExportTarget,
    GroundTruthCategory,
    GroundTruthExportFilter,
    LabelClass,
    LabelSchema,
    TaskExportFilter,
    TaskStatus,
    parse_export_filter,
)
from runmesh.catalog.repository import DataFile, Executor
from runmesh.core.events import JsonObject

_TIMEOUT_S = 30.0
DEFAULT_PREFETCH = 500
"""Rows per round trip of the cursor: enough to hide the latency, few enough to stay small
(an item is a few KiB of DM JSON)."""

# The name of the collection's primary file specification, if one is marked.
_PRIMARY_SPEC = """(
    SELECT spec->>'name' FROM jsonb_array_elements(c.file_specifications) AS spec
    WHERE (spec->>'is_primary')::boolean LIMIT 1
)"""

_UNIT_COLUMNS = "u.unit_key, u.files::text AS files, u.meta::text AS meta"

_TASKS = f"""
    SELECT t.id, t.data::text AS data, t.status, t.id AS task_id, t.data_unit_id,
           NULL::text AS category, {_UNIT_COLUMNS}
    FROM catalog.tasks AS t
    JOIN catalog.data_units AS u ON u.id = t.data_unit_id AND u.tenant = t.tenant
    WHERE t.tenant = $1 AND t.project_id = $2 AND ($3::text IS NULL OR t.status = $3)
      AND t.id > $4
    ORDER BY t.id
"""
_ASSIGNMENTS = f"""
    SELECT a.id, a.data::text AS data, a.status, a.task_id, t.data_unit_id,
           NULL::text AS category, {_UNIT_COLUMNS}
    FROM catalog.assignments AS a
    JOIN catalog.tasks AS t ON t.id = a.task_id AND t.tenant = a.tenant
    JOIN catalog.data_units AS u ON u.id = t.data_unit_id AND u.tenant = t.tenant
    WHERE a.tenant = $1 AND t.project_id = $2 AND ($3::text IS NULL OR a.status = $3)
      AND a.id > $4
    ORDER BY a.id
"""
# Items may come from units of several collections (or none), so the primary specification
# is looked up per row.
_GROUND_TRUTH = f"""
    SELECT g.id, g.data::text AS data, NULL::text AS status, NULL::bigint AS task_id,
           g.data_unit_id, g.category, {_UNIT_COLUMNS}, {_PRIMARY_SPEC} AS primary_spec
    FROM catalog.ground_truth_items AS g
    LEFT JOIN catalog.data_units AS u ON u.id = g.data_unit_id AND u.tenant = g.tenant
    LEFT JOIN catalog.data_collections AS c ON c.id = u.data_collection_id
    WHERE g.tenant = $1 AND g.version_id = $2 AND g.id > $3
    ORDER BY g.id
"""


@dataclass(slots=True, frozen=True)
class ExportItem:
    """One thing to export: its DM data and the files of its data unit.

    `id` is the task's, assignment's or ground-truth item's id (ascending in a stream).
    `files` holds every file of the unit by specification name, `primary_spec` names the one
    that stands for the unit (None when the collection marks none). A ground-truth item
    without a data unit has no files and `data_unit_id` None. `meta` is the unit's meta.
    """

    id: int
    target: ExportTarget
    data: JsonObject | None  # the DM document; None for a task nobody annotated
    files: dict[str, DataFile]
    data_unit_id: int | None
    primary_spec: str | None
    meta: JsonObject
    unit_key: str | None = None  # the file stem that grouped the unit's files
    status: TaskStatus | AssignmentStatus | None = None  # the task's or assignment's
    task_id: int | None = None  # the task (of a task or an assignment)
    category: GroundTruthCategory | None = None  # a ground-truth item's split


def _item(row: Mapping[str, Any], target: ExportTarget, primary: str | None) -> ExportItem:
    files = row["files"]
    meta = row["meta"]
    return ExportItem(
        id=row["id"],
        target=target,
        data=None if row["data"] is None else orjson.loads(row["data"]),
        files={} if files is None else cast("dict[str, DataFile]", orjson.loads(files)),
        data_unit_id=row["data_unit_id"],
        primary_spec=row["primary_spec"] if target == "ground_truth" else primary,
        meta={} if meta is None else orjson.loads(meta),
        unit_key=row["unit_key"],
        status=row["status"],
        task_id=row["task_id"],
        category=row["category"],
    )


async def _project_primary(
    conn: Executor, tenant: str, project_id: uuid.UUID
) -> tuple[bool, str | None]:
    """Whether the tenant has the project, and its collection's primary specification."""
    row = await conn.fetchrow(
        f"""
        SELECT {_PRIMARY_SPEC} AS primary_spec
        FROM catalog.projects AS p JOIN catalog.data_collections AS c
            ON c.id = p.data_collection_id
        WHERE p.id = $1 AND p.tenant = $2
        """,
        project_id,
        tenant,
        timeout=_TIMEOUT_S,
    )
    return (False, None) if row is None else (True, row["primary_spec"])


async def _plan(
    conn: Executor, tenant: str, chosen: ExportFilter, after_id: int
) -> tuple[str, list[Any], str | None]:
    """The query and arguments that stream the filter's items, and the primary specification
    when it is the same for all of them. `CatalogNotFoundError` when the filter names a
    project or version that is not the tenant's."""
    if isinstance(chosen, GroundTruthExportFilter):
        version = chosen.ground_truth_dataset_version
        owned = await conn.fetchval(
            "SELECT true FROM catalog.ground_truth_versions WHERE id = $1 AND tenant = $2",
            version,
            tenant,
            timeout=_TIMEOUT_S,
        )
        if not owned:
            raise CatalogNotFoundError(f"ground-truth dataset version {version} not found")
        return _GROUND_TRUTH, [tenant, version, after_id], None
    owned, primary = await _project_primary(conn, tenant, chosen.project)
    if not owned:
        raise CatalogNotFoundError(f"project {chosen.project} not found")
    query = _TASKS if isinstance(chosen, TaskExportFilter) else _ASSIGNMENTS
    return query, [tenant, chosen.project, chosen.status, after_id], primary


@contextlib.asynccontextmanager
async def _snapshot(conn: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction (cursors live in one): the caller's own, or a new
    read-only one that sees one snapshot from the first row to the last."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, _snapshot(acquired) as inner:
            yield inner
    elif conn.is_in_transaction():
        yield conn
    else:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn


async def stream_export_items(
    conn: Executor,
    tenant: str,
    target: ExportTarget,
    filter: ExportFilter | Mapping[str, Any],  # the name the export params use
    *,
    after_id: int = 0,
    prefetch: int = DEFAULT_PREFETCH,
) -> AsyncIterator[ExportItem]:
    """The target's items that match the filter, in id order after `after_id`, fetched
    `prefetch` rows at a time through a server-side cursor.

    `filter` is validated for the target (`parse_export_filter`): task {project, status?},
    assignment {project, status?}, ground_truth {ground_truth_dataset_version}. Raises
    pydantic's ValidationError for a bad filter and `CatalogNotFoundError` when the project
    or version is not the tenant's. On a connection outside a transaction the stream opens a
    read-only repeatable-read one; on a pool it holds one of its connections until the stream
    ends. Close the stream when stopping early (`contextlib.aclosing`), which ends that
    transaction.
    """
    chosen = parse_export_filter(target, filter)
    async with _snapshot(conn) as reader:
        query, args, primary = await _plan(reader, tenant, chosen, after_id)
        cursor = reader.cursor(query, *args, prefetch=prefetch, timeout=_TIMEOUT_S)
        async for row in cursor:
            yield _item(row, target, primary)


async def count_export_items(
    conn: Executor,
    tenant: str,
    target: ExportTarget,
    filter: ExportFilter | Mapping[str, Any],  # the name the export params use
) -> int:
    """How many items `stream_export_items` yields for the same target and filter (from the
    start); the same errors."""
    chosen = parse_export_filter(target, filter)
    if isinstance(chosen, GroundTruthExportFilter):
        await _plan(conn, tenant, chosen, 0)  # raises for another tenant's version
        count = await conn.fetchval(
            "SELECT count(*) FROM catalog.ground_truth_items WHERE tenant = $1 AND version_id = $2",
            tenant,
            chosen.ground_truth_dataset_version,
            timeout=_TIMEOUT_S,
        )
        return int(count)
    owned, _ = await _project_primary(conn, tenant, chosen.project)
    if not owned:
        raise CatalogNotFoundError(f"project {chosen.project} not found")
    if isinstance(chosen, AssignmentExportFilter):
        query = """
            SELECT count(*) FROM catalog.assignments AS a
            JOIN catalog.tasks AS t ON t.id = a.task_id AND t.tenant = a.tenant
            WHERE a.tenant = $1 AND t.project_id = $2 AND ($3::text IS NULL OR a.status = $3)
        """
    else:
        query = """
            SELECT count(*) FROM catalog.tasks
            WHERE tenant = $1 AND project_id = $2 AND ($3::text IS NULL OR status = $3)
        """
    count = await conn.fetchval(query, tenant, chosen.project, chosen.status, timeout=_TIMEOUT_S)
    return int(count)


async def export_label_classes(
    conn: Executor,
    tenant: str,
    target: ExportTarget,
    filter: ExportFilter | Mapping[str, Any],  # the name the export params use
) -> list[LabelClass]:
    """The classes of an export, by id: the label schema of the filter's project, or of the
    ground-truth dataset's project. A dataset without a project has none, so its version's
    items define them: the class names they use, sorted, with ids 0, 1, ... in that order.
    `CatalogNotFoundError` when the project or version is not the tenant's."""
    chosen = parse_export_filter(target, filter)
    if isinstance(chosen, GroundTruthExportFilter):
        version = chosen.ground_truth_dataset_version
        row = await conn.fetchrow(
            """
            SELECT p.label_schema::text AS label_schema
            FROM catalog.ground_truth_versions AS v
            JOIN catalog.ground_truth_datasets AS d ON d.id = v.dataset_id
            LEFT JOIN catalog.projects AS p ON p.id = d.project_id
            WHERE v.id = $1 AND v.tenant = $2
            """,
            version,
            tenant,
            timeout=_TIMEOUT_S,
        )
        if row is None:
            raise CatalogNotFoundError(f"ground-truth dataset version {version} not found")
        if row["label_schema"] is None:
            names = await conn.fetch(
                """
                SELECT DISTINCT name #>> '{}' AS name
                FROM catalog.ground_truth_items AS g,
                     jsonb_path_query(g.data, '$.images[*].annotations[*].class_name') AS name
                WHERE g.tenant = $1 AND g.version_id = $2
                ORDER BY 1
                """,
                tenant,
                version,
                timeout=_TIMEOUT_S,
            )
            return [LabelClass(id=i, name=row["name"]) for i, row in enumerate(names)]
        schema = LabelSchema.model_validate_json(row["label_schema"])
    else:
        text = await conn.fetchval(
            "SELECT label_schema::text FROM catalog.projects WHERE id = $1 AND tenant = $2",
            chosen.project,
            tenant,
            timeout=_TIMEOUT_S,
        )
        if text is None:
            raise CatalogNotFoundError(f"project {chosen.project} not found")
        schema = LabelSchema.model_validate_json(text)
    return sorted(schema.classes, key=lambda label: label.id)


async def export_classes(
    conn: Executor,
    tenant: str,
    target: ExportTarget,
    filter: ExportFilter | Mapping[str, Any],  # the name the export params use
) -> list[str]:
    """The class names of `export_label_classes`, in the order of their ids (a position in
    this list is a class's id only when the ids are 0, 1, 2, ... without gaps)."""
    return [label.name for label in await export_label_classes(conn, tenant, target, filter)]
