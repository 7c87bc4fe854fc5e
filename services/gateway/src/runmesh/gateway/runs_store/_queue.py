"""Where queued runs stand: their position in their queue, and the held runs (placed on no
pool yet) the placement dispatcher releases."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, Db

# Every tenant's queued runs count: they share the pool's workers. A queue is a category's
# runs on one pool ('' for the held ones: on none yet; a run produced straight to Kafka has
# no pool stored and went to the default one). The partial index `runs_queued` keeps this a scan of
# the queued runs of the categories asked about only.
_QUEUE_OF = "coalesce(pool, CASE WHEN submitted_via = 'kafka' THEN 'default' ELSE '' END)"
_POSITIONS = f"""
SELECT id, position FROM (
    SELECT id, row_number() OVER (
        PARTITION BY category, {_QUEUE_OF} ORDER BY created_at, id
    ) AS position
    FROM runs.runs WHERE state = 'queued' AND category = ANY($1::text[])
) AS queue WHERE id = ANY($2::uuid[])
"""


async def queue_positions(
    db: Db, categories: Sequence[str], run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The 1-based position of each of `run_ids` that is still queued, among every queued run
    of its category and pool (oldest first, whoever's); the runs no longer queued are left
    out."""
    if not run_ids:
        return {}
    rows = await db.fetch(_POSITIONS, sorted(set(categories)), list(run_ids), timeout=DB_TIMEOUT_S)
    return {row["id"]: row["position"] for row in rows}


async def lock_held_runs(db: Db, limit: int) -> list[dict[str, Any]]:
    """Lock up to `limit` held runs (queued, submitted through the gateway, on no pool yet:
    no live pool fitted them, or their tenant was at its limit), oldest first; rows another
    transaction holds are skipped."""
    rows = await db.fetch(
        "SELECT id, tenant, category, placement FROM runs.runs"
        " WHERE state = 'queued' AND pool IS NULL AND submitted_via <> 'kafka'"
        " ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


async def set_pools(db: Db, run_ids: Sequence[str], pools: Sequence[str]) -> None:
    """Record the pool each run was released onto."""
    await db.execute(
        "UPDATE runs.runs AS r SET pool = p.pool, updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[]) AS p(id, pool) WHERE r.id = p.id",
        list(run_ids),
        list(pools),
        timeout=DB_TIMEOUT_S,
    )
