"""Cancelling runs: locking one, ending it or asking its worker to, ending overdue ones."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from runmesh.core.notices import NOTIFY_CHANNEL, RunNotice
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, NOTIFY_EACH


async def lock_run(
    conn: asyncpg.Connection, tenant: str, run_id: uuid.UUID
) -> dict[str, Any] | None:
    """The tenant's run (every column), locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        "SELECT * FROM runs.runs WHERE id = $1 AND tenant = $2 FOR UPDATE",
        run_id,
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def end_queued_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> dict[str, Any]:
    """Make a (locked) queued run `cancelled` now; the row after (every column)."""
    row = await conn.fetchrow(
        "UPDATE runs.runs SET state = 'cancelled', cancel_requested_at = now(),"
        " finished_at = now(), error = NULL, updated_at = now()"
        " WHERE id = $1 RETURNING *",
        run_id,
        timeout=DB_TIMEOUT_S,
    )
    assert row is not None, "the caller locked the row"
    return dict(row)


async def request_cancel(conn: asyncpg.Connection, run_id: uuid.UUID) -> dict[str, Any]:
    """Note that a (locked) running run should stop; the first request's time counts."""
    row = await conn.fetchrow(
        "UPDATE runs.runs SET cancel_requested_at = coalesce(cancel_requested_at, now()),"
        " updated_at = now() WHERE id = $1 RETURNING *",
        run_id,
        timeout=DB_TIMEOUT_S,
    )
    assert row is not None, "the caller locked the row"
    return dict(row)


async def end_overdue_cancels(
    conn: asyncpg.Connection, older_than_s: float, limit: int
) -> dict[uuid.UUID, str]:
    """Make running runs whose cancel was requested over `older_than_s` ago `cancelled`.

    Rows another transaction holds are skipped (`SKIP LOCKED`), so concurrent callers never end
    a run twice. Returns the tenant of each run ended, by run id.
    """
    rows = await conn.fetch(
        """
        UPDATE runs.runs AS r
        SET state = 'cancelled', finished_at = now(), error = NULL, updated_at = now()
        WHERE r.id IN (
            SELECT id FROM runs.runs
            WHERE state = 'running' AND cancel_requested_at IS NOT NULL
              AND cancel_requested_at < now() - make_interval(secs => $1)
            ORDER BY cancel_requested_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AND r.state = 'running'
        RETURNING r.id, r.tenant
        """,
        older_than_s,
        limit,
        timeout=DB_TIMEOUT_S,
    )
    return {row["id"]: row["tenant"] for row in rows}


async def cancelled_before_starting(
    conn: asyncpg.Connection, run_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of `run_ids` that were cancelled while queued (no attempt ever started)."""
    rows = await conn.fetch(
        "SELECT id FROM runs.runs"
        " WHERE id = ANY($1::uuid[]) AND state = 'cancelled' AND attempt = 0",
        list(run_ids),
        timeout=DB_TIMEOUT_S,
    )
    return {row["id"] for row in rows}


async def notify_ended(conn: asyncpg.Connection, tenants: Mapping[uuid.UUID, str]) -> None:
    """Tell SSE streams (on commit) that these runs (id → tenant) ended, with their last event."""
    if not tenants:
        return
    rows = await conn.fetch(
        "SELECT r.id, (SELECT coalesce(max(e.id), 0) FROM runs.run_events e"
        " WHERE e.run_id = r.id) AS last_id FROM unnest($1::uuid[]) AS r(id)",
        list(tenants),
        timeout=DB_TIMEOUT_S,
    )
    notices = [
        RunNotice(
            tenant=tenants[row["id"]], run_id=row["id"], last_id=row["last_id"], terminal=True
        )
        for row in rows
    ]
    await conn.execute(
        NOTIFY_EACH, NOTIFY_CHANNEL, [n.model_dump_json() for n in notices], timeout=DB_TIMEOUT_S
    )
