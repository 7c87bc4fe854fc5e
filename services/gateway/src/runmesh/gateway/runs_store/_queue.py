"""Where queued runs stand: the runs each pool has under way, the held runs (on no pool yet)
in the order the dispatcher admits them, and each queued run's position.

Every statement is scoped to one deployment (topic prefix): deployments that share a database
do not count each other's runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from runmesh.gateway.runs_store._pipelines import PIPELINE_CATEGORY
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, Db

# A queue is a category's runs on one pool. A run produced straight to Kafka has no pool
# stored: it went to the default one.
_QUEUE_OF: Final = "coalesce(pool, CASE WHEN submitted_via = 'kafka' THEN 'default' END)"
# Admitted: its request went out to a pool (or came straight from Kafka); held: not yet.
_HELD: Final = "pool IS NULL AND submitted_via <> 'kafka'"
_ADMITTED: Final = f"NOT ({_HELD})"

FAIR_SHARE_WINDOW_S: Final = 60
"""How long a run that started counts toward its tenant's share after it started."""

# A tenant's fair share: the runs it has had lately — under way, or started within the last
# FAIR_SHARE_WINDOW_S — plus those of its held runs of the category ahead of this one at the
# same priority. The held run with the smallest share goes first: tenants take turns, one that
# has had fewer runs lately catches up, and a run's share does not move as its tenant's
# earlier runs start (docs/operations.md "Priorities and fair shares"). `$1` is the deployment.
_FAIR_ORDER: Final = f"""
busy AS (
    SELECT tenant, count(*) AS n FROM runs.runs
    WHERE deployment = $1 AND category <> '{PIPELINE_CATEGORY}' AND (
        (state IN ('queued', 'running') AND (state = 'running' OR {_ADMITTED}))
        OR started_at > now() - make_interval(secs => {FAIR_SHARE_WINDOW_S})
    )
    GROUP BY tenant
), held AS (
    SELECT r.id, r.category, r.priority, r.created_at,
        coalesce(b.n, 0) + row_number() OVER (
            PARTITION BY r.tenant, r.category, r.priority ORDER BY r.created_at, r.id
        ) AS share
    FROM runs.runs AS r LEFT JOIN busy AS b USING (tenant)
    WHERE r.deployment = $1 AND r.state = 'queued' AND {_HELD} {{categories}}
)"""
_HELD_IN_ORDER: Final = f"""
WITH {_FAIR_ORDER.format(categories="")}
SELECT id FROM held ORDER BY priority DESC, share, created_at, id LIMIT $2
"""
# A held run stands behind the admitted runs of its category not yet started.
_POSITIONS: Final = f"""
WITH {_FAIR_ORDER.format(categories="AND r.category = ANY($2::text[])")}, admitted AS (
    SELECT id, category, row_number() OVER (
        PARTITION BY category, {_QUEUE_OF} ORDER BY created_at, id
    ) AS position
    FROM runs.runs
    WHERE deployment = $1 AND state = 'queued' AND category = ANY($2::text[]) AND {_ADMITTED}
), ahead AS (
    SELECT category, count(*) AS n FROM admitted GROUP BY category
), held_positions AS (
    SELECT h.id, coalesce(a.n, 0) + row_number() OVER (
        PARTITION BY h.category ORDER BY h.priority DESC, h.share, h.created_at, h.id
    ) AS position
    FROM held AS h LEFT JOIN ahead AS a USING (category)
)
SELECT id, position FROM admitted WHERE id = ANY($3::uuid[])
UNION ALL
SELECT id, position FROM held_positions WHERE id = ANY($3::uuid[])
"""


async def queue_positions(
    db: Db, deployment: str, categories: Sequence[str], run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The 1-based position of each of `run_ids` that is still queued, counting every
    tenant's queued runs: an admitted run among its pool's (oldest first), a held one behind
    its category's admitted runs, in the order the dispatcher admits them. The runs no longer
    queued are left out."""
    if not run_ids:
        return {}
    rows = await db.fetch(
        _POSITIONS, deployment, sorted(set(categories)), list(run_ids), timeout=DB_TIMEOUT_S
    )
    return {row["id"]: row["position"] for row in rows}


async def under_way(
    db: Db, deployment: str, categories: Sequence[str]
) -> dict[tuple[str, str], int]:
    """(category, pool) → its runs under way: started, or admitted onto the pool and not yet
    started. Counted from the runs' states, so a slot cannot leak: a run counts until its
    end is stored, whichever worker ends it."""
    rows = await db.fetch(
        f"SELECT category, {_QUEUE_OF} AS pool, count(*) AS n FROM runs.runs"
        " WHERE deployment = $1 AND category = ANY($2::text[]) AND state IN ('queued', 'running')"
        f" AND (state = 'running' OR {_ADMITTED}) GROUP BY 1, 2",
        deployment,
        sorted(set(categories)),
        timeout=DB_TIMEOUT_S,
    )
    return {(row["category"], row["pool"] or ""): row["n"] for row in rows}


async def held_categories(db: Db, deployment: str) -> list[str]:
    """The categories with held runs."""
    rows = await db.fetch(
        f"SELECT DISTINCT category FROM runs.runs WHERE deployment = $1 AND state = 'queued'"
        f" AND {_HELD}",
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    return sorted(row["category"] for row in rows)


async def recent_run_seconds(
    db: Db, deployment: str, categories: Sequence[str]
) -> dict[tuple[str, str], float]:
    """(category, pool) → the mean duration of its runs that started within the last
    FAIR_SHARE_WINDOW_S and have ended (pools without such runs are left out)."""
    rows = await db.fetch(
        f"SELECT category, {_QUEUE_OF} AS pool,"
        " avg(extract(epoch FROM finished_at - started_at)) AS seconds FROM runs.runs"
        " WHERE deployment = $1 AND category = ANY($2::text[])"
        " AND started_at > now() - make_interval(secs => $3) AND finished_at IS NOT NULL"
        " GROUP BY 1, 2",
        deployment,
        sorted(set(categories)),
        FAIR_SHARE_WINDOW_S,
        timeout=DB_TIMEOUT_S,
    )
    return {(row["category"], row["pool"]): float(row["seconds"]) for row in rows if row["pool"]}


async def held_in_order(db: Db, deployment: str, limit: int) -> list[uuid.UUID]:
    """The first `limit` held runs (queued, submitted through the gateway, on no pool yet) in
    the order they are to be admitted: by priority, then fair share, then age."""
    rows = await db.fetch(_HELD_IN_ORDER, deployment, limit, timeout=DB_TIMEOUT_S)
    return [row["id"] for row in rows]


async def lock_held_runs(db: Db, run_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Lock those of `run_ids` that are still held, in their order; rows another transaction
    holds are skipped."""
    rows = await db.fetch(
        "SELECT id, tenant, category, placement, resources, priority FROM runs.runs"
        f" WHERE id = ANY($1::uuid[]) AND state = 'queued' AND {_HELD}"
        " FOR UPDATE SKIP LOCKED",
        list(run_ids),
        timeout=DB_TIMEOUT_S,
    )
    locked = {row["id"]: dict(row) for row in rows}
    return [locked[run_id] for run_id in run_ids if run_id in locked]


async def set_pools(db: Db, run_ids: Sequence[str], pools: Sequence[str]) -> None:
    """Record the pool each run was released onto."""
    await db.execute(
        "UPDATE runs.runs AS r SET pool = p.pool, updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[]) AS p(id, pool) WHERE r.id = p.id",
        list(run_ids),
        list(pools),
        timeout=DB_TIMEOUT_S,
    )


async def adopt_unscoped(db: Db, deployment: str) -> int:
    """Give this deployment the unfinished runs stored before runs had one (migration 0012);
    how many."""
    status: str = await db.execute(
        "UPDATE runs.runs SET deployment = $1"
        " WHERE deployment = '' AND state IN ('queued', 'running')",
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    return int(status.split()[-1])
