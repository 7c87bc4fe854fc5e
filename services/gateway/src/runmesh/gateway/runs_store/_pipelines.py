"""The run rows of pipelines: the parent run a pipeline is, and its steps' outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from runmesh.core.events import JsonObject
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, RUN_COLUMNS

PIPELINE_CATEGORY = "pipeline"
"""The category of a pipeline's own run (its steps are runs of their own categories)."""


@dataclass(slots=True, frozen=True)
class StepOutcome:
    """A step run's state, and its result or error once it ended."""

    state: str
    result: JsonObject | None
    error: JsonObject | None


async def insert_pipeline_run(
    conn: asyncpg.Connection,
    *,
    run_id: uuid.UUID,
    tenant: str,
    name: str,
    params: JsonObject,
    parent_run_id: uuid.UUID | None,
    idempotency_key: str | None,
    deployment: str,
    submitted_via: str = "rest",
) -> dict[str, Any] | None:
    """Store a pipeline's run in `deployment`, `running` from now (`RUN_COLUMNS`); None when
    its id or idempotency key is taken. `submitted_via`: `rest` or `kafka`."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO runs.runs (id, tenant, category, action, state, params, params_redacted,
            parent_run_id, idempotency_key, submitted_via, started_at, deployment)
        VALUES ($1, $2, '{PIPELINE_CATEGORY}', $3, 'running', $4, $4, $5, $6, $7, now(), $8)
        ON CONFLICT DO NOTHING
        RETURNING {RUN_COLUMNS}
        """,
        run_id,
        tenant,
        name,
        params,
        parent_run_id,
        idempotency_key,
        submitted_via,
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else dict(row)


async def lock_pipeline_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> dict[str, Any] | None:
    """A pipeline's run (every column), locked until the caller's transaction ends."""
    row = await conn.fetchrow(
        "SELECT * FROM runs.runs WHERE id = $1 FOR UPDATE", run_id, timeout=DB_TIMEOUT_S
    )
    return None if row is None else dict(row)


async def step_outcomes(
    conn: asyncpg.Connection, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StepOutcome]:
    """The state, result and error of each of these runs that has a row."""
    rows = await conn.fetch(
        "SELECT id, state, result, error FROM runs.runs WHERE id = ANY($1::uuid[])",
        list(run_ids),
        timeout=DB_TIMEOUT_S,
    )
    return {row["id"]: StepOutcome(row["state"], row["result"], row["error"]) for row in rows}


async def set_pipeline_progress(
    conn: asyncpg.Connection, run_id: uuid.UUID, progress: JsonObject
) -> None:
    """The pipeline's progress (its steps done of all)."""
    await conn.execute(
        "UPDATE runs.runs SET progress = $2, updated_at = now() WHERE id = $1",
        run_id,
        progress,
        timeout=DB_TIMEOUT_S,
    )


async def end_pipeline_run(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    *,
    state: str,
    progress: JsonObject,
    result: JsonObject | None,
    error: JsonObject | None,
) -> None:
    """End a (locked) pipeline's run in `state`, with its final progress, result or error."""
    await conn.execute(
        "UPDATE runs.runs SET state = $2, progress = $3, result = $4, error = $5,"
        " finished_at = now(), updated_at = now() WHERE id = $1",
        run_id,
        state,
        progress,
        result,
        error,
        timeout=DB_TIMEOUT_S,
    )
