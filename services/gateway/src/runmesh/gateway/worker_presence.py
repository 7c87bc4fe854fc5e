"""The presence loop: workers' announcements on `runmesh.workers` into `runs.workers`, and the
reads of the live ones (`GET /v1/workers`, queue reasons, the plugins page)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import asyncpg

from runmesh.core.events import MISSED_HEARTBEATS, WorkerPresence
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics
from runmesh.gateway.consume import Records, consume_batches, decoded
from runmesh.gateway.runs_store import DB_TIMEOUT_S, Db

log = logging.getLogger(__name__)

_SEEN_BOUND: Final = 10_000  # workers whose last shape is remembered (then forgotten at once)
FORGET_AFTER_S: Final = 3600.0
"""A worker not heard of for this long is deleted (it is shown as gone long before)."""

# A worker's clock ahead of the gateway's must not keep it live for longer: `least(.., now())`.
# An older announcement (a redelivered batch) never overwrites a newer one.
_UPSERT = """
INSERT INTO runs.workers (worker, category, service, pool, labels, slots, busy, state,
                          heartbeat_s, started_at, sent_at, deployment, gpus, memory_mb)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, least($11::timestamptz, now()), $12, $13, $14)
ON CONFLICT (worker, category) DO UPDATE SET
    deployment = EXCLUDED.deployment, service = EXCLUDED.service, pool = EXCLUDED.pool,
    labels = EXCLUDED.labels, gpus = EXCLUDED.gpus, memory_mb = EXCLUDED.memory_mb,
    slots = EXCLUDED.slots, busy = EXCLUDED.busy, state = EXCLUDED.state,
    heartbeat_s = EXCLUDED.heartbeat_s, started_at = EXCLUDED.started_at,
    sent_at = EXCLUDED.sent_at
WHERE runs.workers.sent_at <= EXCLUDED.sent_at
"""
_FORGET = "DELETE FROM runs.workers WHERE sent_at < now() - make_interval(secs => $1)"

LIVE: Final = (
    f"state <> 'stopped' AND sent_at > now() - make_interval(secs => heartbeat_s * "
    f"{MISSED_HEARTBEATS})"
)
"""SQL condition of a live worker: announced within its last three heartbeats, not gone."""
_COLUMNS = (
    "worker, category, service, pool, labels, slots, busy, gpus, memory_mb, state, heartbeat_s,"
    " started_at, sent_at AS last_seen"
)


class WorkerPresenceLoop:
    """Keeps `runs.workers` up to date with what workers announce.

    Every gateway replica shares one consumer group; an announcement is an upsert, so a
    batch redone after a lost commit changes nothing. Undecodable records are logged and
    skipped.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        pool: asyncpg.Pool,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._kafka = kafka
        self._pool = pool
        self._topic = Topics(kafka.topic_prefix).workers
        self._deployment = kafka.topic_prefix
        self._on_change = on_change
        self._seen: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {}

    async def run(self) -> None:
        """Consume until cancelled; raises on a lasting Kafka or PostgreSQL failure."""
        await consume_batches(
            self._kafka,
            self._topic,
            group_id=f"{self._kafka.topic_prefix}-gateway-workers",
            client_id="gateway-workers",
            max_records=500,
            handle=self.store,
        )

    async def store(self, records: Records) -> None:
        """Upsert the latest announcement of each worker among `records`; forget workers not
        heard of for an hour."""
        latest = {(p.worker, p.category): p for p in decoded(records, WorkerPresence)}
        rows = [
            (
                p.worker,
                p.category,
                p.service,
                p.pool,
                p.labels,
                p.slots,
                p.busy,
                p.state,
                p.heartbeat_s,
                p.started_at,
                p.sent_at,
                self._deployment,
                p.gpus,
                p.memory_mb,
            )
            for p in latest.values()
        ]
        async with self._pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
            if rows:
                await conn.executemany(_UPSERT, rows, timeout=DB_TIMEOUT_S)
            await conn.execute(_FORGET, FORGET_AFTER_S, timeout=DB_TIMEOUT_S)
        # A worker that joined, left or changed pool or labels may fit a held run now.
        changed = False
        for key, p in latest.items():
            shape = (p.state, p.pool, tuple(p.labels))
            changed |= self._seen.get(key) != shape
            self._seen[key] = shape
        if len(self._seen) > _SEEN_BOUND:
            self._seen.clear()
        if changed:
            self._on_change()


async def live_workers(
    db: Db, deployment: str, *, category: str | None = None, pool: str | None = None
) -> list[dict[str, Any]]:
    """The live workers of `deployment` (one row per worker and category), by category, pool
    and id."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM runs.workers WHERE deployment = $3 AND {LIVE}"
        " AND ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR pool = $2)"
        " ORDER BY category, pool, worker",
        category,
        pool,
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    return [dict(row) for row in rows]


@dataclass(slots=True, frozen=True)
class Offer:
    """What one live worker offers the runs placed on its pool."""

    labels: frozenset[str]
    gpus: int = 0
    memory_mb: int = 0


LivePools: TypeAlias = Mapping[str, Sequence[Offer]]
"""Pool → what each of its live serving workers (of one category) offers."""


@dataclass(slots=True)
class Capacity:
    """What serves one category now: its live serving workers, their slots and pools."""

    workers: int = 0
    slots: int = 0
    busy: int = 0
    pools: list[str] = field(default_factory=list)

    @property
    def free(self) -> int:
        """Slots not holding a run."""
        return max(self.slots - self.busy, 0)


async def pool_capacities(
    db: Db, deployment: str, categories: Sequence[str]
) -> dict[tuple[str, str], Capacity]:
    """(category, pool) → its capacity, for each pool of `categories` with a live serving
    worker in `deployment`."""
    rows = await db.fetch(
        "SELECT category, pool, count(*) AS workers, sum(slots) AS slots, sum(busy) AS busy"
        f" FROM runs.workers WHERE deployment = $2 AND {LIVE} AND state = 'serving'"
        " AND category = ANY($1::text[]) GROUP BY category, pool ORDER BY category, pool",
        sorted(set(categories)),
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    return {
        (row["category"], row["pool"]): Capacity(
            row["workers"], row["slots"], row["busy"], [row["pool"]]
        )
        for row in rows
    }


async def capacities(
    db: Db, deployment: str, keys: Sequence[tuple[str, str | None]]
) -> dict[tuple[str, str | None], Capacity]:
    """The capacity of each (category, pool) of `keys` in `deployment`, pool None meaning
    all its pools (an empty one where no worker serves it)."""
    found: dict[tuple[str, str | None], Capacity] = {}
    by_pool = await pool_capacities(db, deployment, [category for category, _ in keys])
    for (category, pool), each in by_pool.items():
        for key in ((category, pool), (category, None)):
            capacity = found.setdefault(key, Capacity())
            capacity.workers += each.workers
            capacity.slots += each.slots
            capacity.busy += each.busy
            capacity.pools.append(pool)
    return {key: found.get(key, Capacity()) for key in keys}


async def live_pools(db: Db, deployment: str, categories: Sequence[str]) -> dict[str, LivePools]:
    """Category → pool → what each of its live serving workers in `deployment` offers."""
    rows = await db.fetch(
        "SELECT category, pool, labels, gpus, memory_mb FROM runs.workers"
        f" WHERE deployment = $2 AND {LIVE} AND state = 'serving'"
        " AND category = ANY($1::text[])",
        sorted(set(categories)),
        deployment,
        timeout=DB_TIMEOUT_S,
    )
    found: dict[str, dict[str, list[Offer]]] = {}
    for row in rows:
        pools = found.setdefault(row["category"], {})
        offer = Offer(frozenset(row["labels"]), row["gpus"], row["memory_mb"])
        pools.setdefault(row["pool"], []).append(offer)
    return dict(found)
