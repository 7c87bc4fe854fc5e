"""Every statement on `runs.schedules`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from runmesh.gateway.runs_store import DB_TIMEOUT_S, Db

_COLUMNS = (
    "id, name, cron, timezone, overlap, submission, paused, next_at, last_fired_at,"
    " last_run_id, fired, skipped, last_error, created_at"
)


async def insert(
    db: Db,
    *,
    tenant: str,
    name: str,
    cron: str,
    timezone: str,
    overlap: str,
    submission: dict[str, Any],
    next_at: datetime,
) -> dict[str, Any] | None:
    """Store a new schedule; None when the tenant has one of that name."""
    row = await db.fetchrow(
        "INSERT INTO runs.schedules (id, tenant, name, cron, timezone, overlap, submission,"
        " next_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, name) DO NOTHING"
        f" RETURNING {_COLUMNS}",
        uuid.uuid4(),
        tenant,
        name,
        cron,
        timezone,
        overlap,
        submission,
        next_at,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def list_all(db: Db, tenant: str) -> list[dict[str, Any]]:
    """The tenant's schedules, by name."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM runs.schedules WHERE tenant = $1 ORDER BY name",
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


async def get(db: Db, tenant: str, schedule_id: uuid.UUID) -> dict[str, Any] | None:
    """One schedule of the tenant."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM runs.schedules WHERE id = $1 AND tenant = $2",
        schedule_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def set_paused(
    db: Db, tenant: str, schedule_id: uuid.UUID, paused: bool, next_at: datetime | None
) -> dict[str, Any] | None:
    """Pause or resume (resuming moves `next_at` to the next tick from now)."""
    row = await db.fetchrow(
        "UPDATE runs.schedules SET paused = $3, next_at = coalesce($4, next_at)"
        f" WHERE id = $1 AND tenant = $2 RETURNING {_COLUMNS}",
        schedule_id,
        tenant,
        paused,
        next_at,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def delete(db: Db, tenant: str, schedule_id: uuid.UUID) -> bool:
    """Delete a schedule; whether it existed."""
    status: str = await db.execute(
        "DELETE FROM runs.schedules WHERE id = $1 AND tenant = $2",
        schedule_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return status != "DELETE 0"


async def claim_due(db: Db, limit: int) -> list[dict[str, Any]]:
    """Lock up to `limit` schedules whose tick has come, earliest first, until the caller's
    transaction ends; those another replica holds are skipped."""
    rows = await db.fetch(
        f"SELECT tenant, {_COLUMNS} FROM runs.schedules WHERE NOT paused AND next_at <= now()"
        " ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


async def record_tick(
    db: Db,
    schedule_id: uuid.UUID,
    *,
    next_at: datetime,
    run_id: uuid.UUID | None,
    skipped: bool,
    error: str | None,
) -> None:
    """What a tick did, and when the next one is."""
    await db.execute(
        "UPDATE runs.schedules SET next_at = $2,"
        " last_fired_at = CASE WHEN $3::uuid IS NULL THEN last_fired_at ELSE now() END,"
        " last_run_id = coalesce($3, last_run_id),"
        " fired = fired + CASE WHEN $3::uuid IS NULL THEN 0 ELSE 1 END,"
        " skipped = skipped + CASE WHEN $4 THEN 1 ELSE 0 END, last_error = $5"
        " WHERE id = $1",
        schedule_id,
        next_at,
        run_id,
        skipped,
        error,
        timeout=DB_TIMEOUT_S,
    )
