"""Every statement on the pipeline tables (`runs.pipelines`, `runs.pipeline_steps`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from runmesh.core.events import JsonObject
from runmesh.gateway.runs_store import DB_TIMEOUT_S, Db

STEP_STATES = ("pending", "submitted", "succeeded", "failed", "cancelled", "skipped")
"""A step's states: waiting for its needs, its run submitted, its run's end, or skipped
(a step it needs did not succeed)."""


@dataclass(slots=True, frozen=True)
class StepRow:
    """One step of a pipeline's run: its name, its place in the definition, its run's id
    (fixed when the pipeline starts) and state; `error` when it failed before its run began."""

    step: str
    position: int
    run_id: uuid.UUID
    state: str
    error: str | None


@dataclass(slots=True, frozen=True)
class StoredPipeline:
    """A pipeline run's definition (as JSON), its params (defaults merged) and its
    workspace's URI, `s3://<platform bucket>/runs/<tenant>/<run>/workspace/` (None for a run
    stored before workspaces)."""

    spec: JsonObject
    params: JsonObject
    workspace: str | None


async def insert_pipeline(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    spec: JsonObject,
    params: JsonObject,
    steps: Sequence[tuple[str, uuid.UUID, str]],
    workspace: str,
) -> None:
    """Store a pipeline run's definition, params and steps `(step, run id, state)`, in order:
    `pending`, or `succeeded` for a step a resumed pipeline takes from the one before."""
    await conn.execute(
        "INSERT INTO runs.pipelines (run_id, spec, params, workspace) VALUES ($1, $2, $3, $4)",
        run_id,
        spec,
        params,
        workspace,
        timeout=DB_TIMEOUT_S,
    )
    await conn.execute(
        "INSERT INTO runs.pipeline_steps (pipeline_run_id, step, position, run_id, state)"
        " SELECT $1, s.step, s.position, s.run_id, s.state"
        " FROM unnest($2::text[], $3::int[], $4::uuid[], $5::text[])"
        " AS s(step, position, run_id, state)",
        run_id,
        [step for step, _, _ in steps],
        list(range(len(steps))),
        [step_run for _, step_run, _ in steps],
        [state for _, _, state in steps],
        timeout=DB_TIMEOUT_S,
    )


async def load_pipeline(db: Db, run_id: uuid.UUID) -> StoredPipeline | None:
    """The pipeline run's definition and params; None if `run_id` is no pipeline."""
    row = await db.fetchrow(
        "SELECT spec, params, workspace FROM runs.pipelines WHERE run_id = $1",
        run_id,
        timeout=DB_TIMEOUT_S,
    )
    return None if row is None else StoredPipeline(row["spec"], row["params"], row["workspace"])


async def steps_of(db: Db, run_id: uuid.UUID, *, lock: bool = False) -> list[StepRow]:
    """The pipeline run's steps in definition order (locked for the caller's transaction
    when `lock`)."""
    rows = await db.fetch(
        "SELECT step, position, run_id, state, error FROM runs.pipeline_steps"
        " WHERE pipeline_run_id = $1 ORDER BY position" + (" FOR UPDATE" if lock else ""),
        run_id,
        timeout=DB_TIMEOUT_S,
    )
    return [StepRow(**dict(row)) for row in rows]


async def pipelines_of(conn: asyncpg.Connection, step_runs: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The pipeline runs that any of these runs is a step of, in a fixed order (locks are
    then always taken in the same order)."""
    rows = await conn.fetch(
        "SELECT DISTINCT pipeline_run_id FROM runs.pipeline_steps"
        " WHERE run_id = ANY($1::uuid[]) ORDER BY pipeline_run_id",
        list(step_runs),
        timeout=DB_TIMEOUT_S,
    )
    return [row["pipeline_run_id"] for row in rows]


async def set_step_states(
    conn: asyncpg.Connection, run_id: uuid.UUID, states: Mapping[str, tuple[str, str | None]]
) -> None:
    """Set the (locked) steps' states and errors: step → (state, error)."""
    if not states:
        return
    await conn.execute(
        "UPDATE runs.pipeline_steps AS s SET state = c.state, error = c.error"
        " FROM unnest($2::text[], $3::text[], $4::text[]) AS c(step, state, error)"
        " WHERE s.pipeline_run_id = $1 AND s.step = c.step",
        run_id,
        list(states),
        [state for state, _ in states.values()],
        [error for _, error in states.values()],
        timeout=DB_TIMEOUT_S,
    )


def step_rows_json(rows: Sequence[StepRow]) -> list[dict[str, Any]]:
    """Steps as the API shows them."""
    return [
        {"step": row.step, "run_id": str(row.run_id), "state": row.state, "error": row.error}
        for row in rows
    ]
