"""The aggregator's batch on run rows: create, lock, and update them with their notices."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from runmesh.core.notices import NOTIFY_CHANNEL, RunNotice
from runmesh.gateway.run_state import RunSnapshot
from runmesh.gateway.runs_store._sql import NOTIFY_EACH

# These statements take the pool's command timeout (30 s), not DB_TIMEOUT_S: their time grows
# with the batch (thousands of events), where the statements above touch a row or a page.

# Rows for runs first seen through their events (Kafka submissions). Inserted before the row
# locks are taken: a concurrent insert of the same run (a second aggregator during a rebalance)
# then makes this one wait and see the committed row instead of a stale "no row".
_INSERT_KAFKA_RUNS = """
INSERT INTO runs.runs (id, tenant, category, action, plugin, submitted_via, deployment)
SELECT d.id, d.tenant, d.category, '', NULL, 'kafka', $4
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS d(id, tenant, category)
ORDER BY d.id
ON CONFLICT (id) DO NOTHING
"""

# Locked in id order so that concurrent writers of the same runs cannot deadlock each other.
_LOCK_RUNS = """
SELECT id, tenant, submitted_via, action, plugin, state, attempt, retry_reason, plugin_version,
       params_redacted, progress, metrics, result, error, started_at, finished_at
FROM runs.runs WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""

# One statement updates every touched run and queues its notice.
_UPDATE_RUNS = f"""
WITH d AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::int4[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
                         $13::timestamptz[], $14::text[], $15::text[], $16::uuid[],
                         $17::text[])
        AS d(id, state, attempt, plugin_version, params_redacted, progress, metrics, result,
             error, started_at, finished_at, action, plugin, parent_run_id, retry_reason)
), updated AS (
    UPDATE runs.runs AS r SET
        state = d.state,
        attempt = d.attempt,
        retry_reason = d.retry_reason,
        plugin_version = d.plugin_version,
        params_redacted = d.params_redacted::jsonb,
        -- A Kafka submission's params never reach the gateway; the redacted ones are all
        -- it knows.
        params = CASE WHEN r.submitted_via = 'kafka' THEN d.params_redacted::jsonb
                      ELSE r.params END,
        progress = d.progress::jsonb,
        metrics = d.metrics::jsonb,
        result = d.result::jsonb,
        error = d.error::jsonb,
        started_at = d.started_at,
        finished_at = d.finished_at,
        action = d.action,
        plugin = d.plugin,
        -- A Kafka child run's parent is known only from its run.started.
        parent_run_id = COALESCE(r.parent_run_id, d.parent_run_id),
        updated_at = now()
    FROM d WHERE r.id = d.id
)
{NOTIFY_EACH}
"""


@dataclass(slots=True, frozen=True)
class LockedRun:
    """A run row the aggregator holds: how it was submitted and its event-derived state."""

    tenant: str
    submitted_via: str  # 'rest' or 'kafka'
    action: str
    plugin: str | None
    snapshot: RunSnapshot


@dataclass(slots=True, frozen=True)
class RunUpdate:
    """A run row's new event-derived columns, and the notice its SSE streams get on commit."""

    snapshot: RunSnapshot
    action: str
    plugin: str | None
    notice: RunNotice


async def insert_kafka_runs(
    conn: asyncpg.Connection, runs: Mapping[uuid.UUID, tuple[str, str]], deployment: str
) -> None:
    """Rows for runs first seen through their events (id → (tenant, category)) in
    `deployment`; known ones stay."""
    await conn.execute(
        _INSERT_KAFKA_RUNS,
        list(runs),
        [tenant for tenant, _ in runs.values()],
        [category for _, category in runs.values()],
        deployment,
    )


async def lock_runs(
    conn: asyncpg.Connection, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LockedRun]:
    """The runs' rows, locked (in id order) until the caller's transaction ends."""
    rows = await conn.fetch(_LOCK_RUNS, list(run_ids))
    return {
        row["id"]: LockedRun(
            tenant=row["tenant"],
            submitted_via=row["submitted_via"],
            action=row["action"],
            plugin=row["plugin"],
            snapshot=RunSnapshot(
                state=row["state"],
                attempt=row["attempt"],
                retry_reason=row["retry_reason"],
                plugin_version=row["plugin_version"],
                params_redacted=row["params_redacted"],
                progress=row["progress"],
                metrics=row["metrics"],
                result=row["result"],
                error=row["error"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
            ),
        )
        for row in rows
    }


async def update_runs(conn: asyncpg.Connection, updates: Sequence[RunUpdate]) -> None:
    """Write the runs' new state and queue their notices, in one statement."""
    columns: list[list[Any]] = [[] for _ in range(15)]
    for update in updates:
        after = update.snapshot
        for column, value in zip(
            columns,
            (
                update.notice.run_id,
                after.state,
                after.attempt,
                after.plugin_version,
                _json(after.params_redacted),
                _json(after.progress),
                _json(after.metrics),
                _json_or_none(after.result),
                _json_or_none(after.error),
                after.started_at,
                after.finished_at,
                update.action,
                update.plugin,
                after.parent_run_id,
                after.retry_reason,
            ),
            strict=True,
        ):
            column.append(value)
    notices = [update.notice.model_dump_json() for update in updates]
    await conn.execute(_UPDATE_RUNS, NOTIFY_CHANNEL, notices, *columns)


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _json_or_none(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
