"""Why a queued run has not started: the `queue` of its Run JSON and of its SSE stream."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from runmesh.core.pools import DEFAULT_POOL
from runmesh.gateway import runs_store
from runmesh.gateway.placement import Placer
from runmesh.gateway.runs_store import PIPELINE_CATEGORY
from runmesh.gateway.worker_presence import Capacity, capacities


class QueueOut(BaseModel):
    """Where a queued run stands and why it waits."""

    reason: str = Field(
        description="In words: `no worker serves category smart_tool ...`, `waiting for a "
        "worker of export to take it (3 of 8 slots free)`, `position 12 in the export queue: "
        "8 of 8 slots busy on 1 worker`"
    )
    position: int = Field(
        ge=1,
        description="1 = the next of its queue to start: its pool's runs sent to it (oldest "
        "first), then its category's held runs (by priority and fair share); counts every "
        "tenant's queued runs",
    )
    pool: str | None = Field(
        description="The pool its request went to; null while the gateway holds it (until "
        "its pool has room, a live pool fits it, or its tenant is under its limit)"
    )
    workers: int = Field(ge=0, description="Live workers serving it (its pool's, if it has one)")
    slots: int = Field(ge=0, description="Their slots (runs at once), all together")
    busy: int = Field(ge=0, description="Of those, the slots holding a run")
    pools: list[str] = Field(description="The pools of those workers")


class RunQueueNotice(QueueOut):
    """The `data:` of an `event: run.queue` message (no `id:`) of a queued run's stream: sent
    first, then whenever where it stands changes, until it starts."""

    run_id: uuid.UUID


def queue_reason(category: str, pool: str, position: int, capacity: Capacity) -> str:
    """Why the run at `position` of `category`'s queue on `pool` waits, given what serves it."""
    queue = category if pool == DEFAULT_POOL else f"{category} (pool {pool})"
    if capacity.workers == 0:
        where = "" if pool == DEFAULT_POOL else f" in pool {pool}"
        return (
            f"no worker serves category {category}{where}: start one "
            f"(`runmesh worker --category {category}"
            + ("" if pool == DEFAULT_POOL else f" --pool {pool}")
            + "`)"
        )
    if position <= capacity.free:
        return (
            f"waiting for a worker of {queue} to take it "
            f"({capacity.free} of {capacity.slots} slots free)"
        )
    workers = f"{capacity.workers} worker" + ("s" if capacity.workers != 1 else "")
    return (
        f"position {position} in the {queue} queue: "
        f"{capacity.busy} of {capacity.slots} slots busy on {workers}"
    )


async def queue_views(
    db: runs_store.Db, deployment: str, rows: Sequence[Mapping[str, Any]]
) -> dict[uuid.UUID, QueueOut]:
    """The `QueueOut` of each queued run among `rows` (pipeline runs have none: their steps
    queue)."""
    queued = [
        row for row in rows if row["state"] == "queued" and row["category"] != PIPELINE_CATEGORY
    ]
    if not queued:
        return {}
    categories = sorted({row["category"] for row in queued})
    ids = [row["id"] for row in queued]
    positions = await runs_store.queue_positions(db, deployment, categories, ids)
    held = await _held_places(db, deployment, [row for row in queued if _pool_of(row) is None])
    targets = {row["id"]: _pool_of(row) or held[row["id"]][0] for row in queued}
    found = await capacities(
        db, deployment, [(row["category"], targets[row["id"]]) for row in queued]
    )
    views = {}
    for row in queued:
        position = positions.get(row["id"])
        if position is None:
            continue  # it started meanwhile
        category, target = row["category"], targets[row["id"]]
        capacity = found[(category, target)]
        _, reason = held.get(row["id"], (None, None))
        if reason is None:  # admitted, or held only until its pool has room
            assert target is not None, "a held run without a reason has a pool to go to"
            reason = queue_reason(category, target, position, capacity)
        views[row["id"]] = QueueOut(
            reason=reason,
            position=position,
            pool=_pool_of(row),
            workers=capacity.workers,
            slots=capacity.slots,
            busy=capacity.busy,
            pools=capacity.pools,
        )
    return views


def _pool_of(row: Mapping[str, Any]) -> str | None:
    """The pool a queued run's request went to; None while it is held (a run produced
    straight to Kafka has none stored and went to the default pool)."""
    if row.get("pool") is not None:
        return str(row["pool"])
    return DEFAULT_POOL if row.get("submitted_via") == "kafka" else None


async def _held_places(
    db: runs_store.Db, deployment: str, held: Sequence[Mapping[str, Any]]
) -> dict[uuid.UUID, tuple[str | None, str | None]]:
    """Each held run's `place()`: the pool it goes to once that has room, or why it waits
    for more than room (no live pool fits its placement and resources, or its tenant's
    limit)."""
    if not held:
        return {}
    placer = await Placer.load(db, deployment, held, lock=False)
    return {row["id"]: placer.place(row) for row in held}
