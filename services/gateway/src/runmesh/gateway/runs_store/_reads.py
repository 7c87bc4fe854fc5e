"""Reading runs and their stored events for the REST API: one run, a filtered list, logs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runmesh.core.events import TERMINAL_EVENT_TYPES
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, RUN_COLUMNS, Db


async def get_run(db: Db, tenant: str, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The tenant's run (`RUN_COLUMNS`), or None: another tenant's run is not found either."""
    row = await db.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM runs.runs WHERE id = $1 AND tenant = $2",
        run_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def get_runs(db: Db, tenant: str, run_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Those of these runs that exist and are the tenant's (`RUN_COLUMNS`), in no order."""
    rows = await db.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs.runs WHERE id = ANY($1::uuid[]) AND tenant = $2",
        list(run_ids),
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


async def run_ids_between(
    db: Db, tenant: str, low: uuid.UUID, high: uuid.UUID, *, limit: int
) -> list[uuid.UUID]:
    """The tenant's run ids in [low, high] (those with one prefix), at most `limit`: a range
    on the primary key, so a short id is found without reading every run."""
    rows = await db.fetch(
        "SELECT id FROM runs.runs WHERE id BETWEEN $1 AND $2 AND tenant = $3 ORDER BY id LIMIT $4",
        low,
        high,
        tenant,
        limit,
        timeout=DB_TIMEOUT_S,
    )
    return [row["id"] for row in rows]


async def run_exists(db: Db, tenant: str, run_id: uuid.UUID) -> bool:
    """Whether the tenant has this run."""
    found = await db.fetchval(
        "SELECT true FROM runs.runs WHERE id = $1 AND tenant = $2",
        run_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return bool(found)


async def run_state(db: Db, run_id: uuid.UUID, tenant: str | None = None) -> str | None:
    """The run's state, or None if it has no row (of `tenant`, when one is given)."""
    if tenant is None:
        state: str | None = await db.fetchval(
            "SELECT state FROM runs.runs WHERE id = $1", run_id, timeout=DB_TIMEOUT_S
        )
    else:
        state = await db.fetchval(
            "SELECT state FROM runs.runs WHERE id = $1 AND tenant = $2",
            run_id,
            tenant,
            timeout=DB_TIMEOUT_S,
        )
    return state


@dataclass(slots=True, frozen=True)
class RunFilter:
    """Which of a tenant's runs a list shows; None (or empty) = any."""

    states: Sequence[str] = ()
    category: str | None = None
    plugin_code: str | None = None
    # Runs without a plugin ran their category's built-in one: these categories' count as
    # runs of `plugin_code`.
    builtin_categories: Sequence[str] = ()
    action: str | None = None
    parent_run_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    name: str | None = None
    """Part of the run's name (its `name` param, or a pipeline's name), any case."""


async def list_runs(
    db: Db,
    tenant: str,
    where: RunFilter,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The tenant's runs (`RUN_COLUMNS`), newest first, before (created_at, id) if given."""
    clauses = ["tenant = $1"]
    args: list[Any] = [tenant]

    def add(sql: str, *values: Any) -> None:
        placeholders = []
        for value in values:
            args.append(value)
            placeholders.append(f"${len(args)}")
        clauses.append(sql.format(*placeholders))

    if where.states:
        add("state = ANY({0}::text[])", list(where.states))
    if where.category is not None:
        add("category = {0}", where.category)
    if where.plugin_code is not None:
        add(
            "(split_part(plugin, '@', 1) = {0} OR (plugin IS NULL AND category = ANY({1})))",
            where.plugin_code,
            list(where.builtin_categories),
        )
    if where.action is not None:
        add("action = {0}", where.action)
    if where.parent_run_id is not None:
        add("parent_run_id = {0}", where.parent_run_id)
    if where.name is not None:
        pattern = (
            "%" + where.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        add(
            "(CASE WHEN category = 'pipeline' THEN action ELSE params_redacted->>'name' END)"
            " ILIKE {0}",
            pattern,
        )
    if where.created_after is not None:
        add("created_at > {0}", where.created_after)
    if where.created_before is not None:
        add("created_at < {0}", where.created_before)
    if before is not None:
        add("(created_at, id) < ({0}, {1})", *before)
    args.append(limit)
    rows = await db.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs.runs WHERE {' AND '.join(clauses)}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


async def log_events(
    db: Db,
    tenant: str,
    run_id: uuid.UUID,
    *,
    levels: Sequence[str],
    attempt: int | None,
    after: int,
    limit: int,
) -> list[asyncpg.Record]:
    """The run's `run.log` events (id, attempt, ts, payload) after `after`, in order."""
    clauses = ["run_id = $1", "tenant = $2", "type = 'run.log'", "id > $3"]
    args: list[Any] = [run_id, tenant, after]
    if levels:
        args.append(list(levels))
        clauses.append(f"coalesce(payload->>'level', 'info') = ANY(${len(args)}::text[])")
    if attempt is not None:
        args.append(attempt)
        clauses.append(f"attempt = ${len(args)}")
    args.append(limit)
    rows: list[asyncpg.Record] = await db.fetch(
        f"SELECT id, attempt, ts, payload FROM runs.run_events WHERE {' AND '.join(clauses)}"
        f" ORDER BY id LIMIT ${len(args)}",
        *args,
        timeout=DB_TIMEOUT_S,
    )
    return rows


async def metric_events(db: Db, tenant: str, run_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """The run's first `limit` `run.metric` events (attempt, ts, payload), in order."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT attempt, ts, payload FROM runs.run_events"
        " WHERE run_id = $1 AND tenant = $2 AND type = 'run.metric' ORDER BY id LIMIT $3",
        run_id,
        tenant,
        limit,
        timeout=DB_TIMEOUT_S,
    )
    return rows


async def artifact_event(
    db: Db, tenant: str, run_id: uuid.UUID, event_id: int
) -> asyncpg.Record | None:
    """The payload of the run's `run.artifact` event `event_id`, and the run's parent."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT e.payload, r.parent_run_id FROM runs.run_events e"
        " JOIN runs.runs r ON r.id = e.run_id AND r.tenant = e.tenant"
        " WHERE e.id = $1 AND e.run_id = $2 AND e.tenant = $3 AND e.type = 'run.artifact'",
        event_id,
        run_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return row


async def has_terminal_event(db: Db, run_id: uuid.UUID, up_to: int) -> bool:
    """Whether the run has a terminal event with an id at or below `up_to`."""
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM runs.run_events"
        " WHERE run_id = $1 AND id <= $2 AND type = ANY($3::text[]))",
        run_id,
        up_to,
        sorted(TERMINAL_EVENT_TYPES),
        timeout=DB_TIMEOUT_S,
    )
    return found
