"""Storing a run submitted over REST, and finding the run an earlier submission made."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from runmesh.core.run_policy import DEFAULT_PRIORITY
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, RUN_COLUMNS


@dataclass(slots=True, frozen=True)
class NewRun:
    """A run submitted over REST, as stored: queued until its first event."""

    id: uuid.UUID
    tenant: str
    category: str
    plugin: str | None
    action: str
    params: dict[str, Any]
    params_redacted: dict[str, Any]
    timeout_s: float | None
    parent_run_id: uuid.UUID | None
    idempotency_key: str | None
    max_attempts: int | None = None
    retry_backoff_s: float | None = None
    placement: dict[str, Any] | None = None
    pool: str | None = None
    priority: int = DEFAULT_PRIORITY
    resources: dict[str, Any] | None = None
    deployment: str = ""


async def insert_run(conn: asyncpg.Connection, run: NewRun) -> dict[str, Any] | None:
    """Store a queued run (`RUN_COLUMNS`); None when its id or idempotency key is taken."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO runs.runs (id, tenant, category, plugin, action, state, params,
            params_redacted, timeout_s, parent_run_id, idempotency_key, submitted_via,
            max_attempts, retry_backoff_s, placement, pool, priority, deployment, resources)
        VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, 'rest', $11, $12, $13, $14,
            $15, $16, $17)
        ON CONFLICT DO NOTHING
        RETURNING {RUN_COLUMNS}
        """,
        run.id,
        run.tenant,
        run.category,
        run.plugin,
        run.action,
        run.params,
        run.params_redacted,
        run.timeout_s,
        run.parent_run_id,
        run.idempotency_key,
        run.max_attempts,
        run.retry_backoff_s,
        run.placement,
        run.pool,
        run.priority,
        run.deployment,
        run.resources,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def find_submitted(
    conn: asyncpg.Connection, tenant: str, run_id: uuid.UUID, idempotency_key: str | None
) -> dict[str, Any] | None:
    """The tenant's run with this idempotency key, else with this id (`RUN_COLUMNS`)."""
    row = None
    if idempotency_key is not None:
        row = await conn.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM runs.runs WHERE tenant = $1 AND idempotency_key = $2",
            tenant,
            idempotency_key,
            timeout=DB_TIMEOUT_S,
        )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM runs.runs WHERE id = $1 AND tenant = $2",
            run_id,
            tenant,
            timeout=DB_TIMEOUT_S,
        )
    return None if row is None else dict(row)
