"""Admission by capacity (issue 17 item 3, docs/operations.md "Priorities and fair shares").

A pool's window is how many runs it may have under way (started, or admitted onto its topic
and not yet started): `ceil(slots * RUNMESH_ADMISSION_PER_SLOT)` over its live serving
workers. The dispatcher admits held runs while their pool's window has room; the rest wait
in PostgreSQL, where priorities and fair shares order them, not on the topic, where a worker
would take them first come first served. A pool with no live worker has no room: its runs
wait until one announces itself (a worker that misses a heartbeat holds runs back for a
moment; it never floods its topic with the whole queue).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from runmesh.gateway import runs_store
from runmesh.gateway.runs_store import Db
from runmesh.gateway.worker_presence import Capacity, pool_capacities

MAX_PER_SLOT: Final = 250
"""The most runs per slot a window holds, however short the pool's runs."""


@dataclass(slots=True, frozen=True)
class Policy:
    """How large windows are (`RUNMESH_ADMISSION_PER_SLOT`, `RUNMESH_ADMISSION_AHEAD_S`)."""

    per_slot: float
    ahead_s: float


@dataclass(slots=True)
class Window:
    """One pool's window of a category: its live workers' slots, its runs under way, and
    the mean duration of its recent runs (None: none ended lately)."""

    workers: int
    slots: int
    under_way: int
    policy: Policy
    mean_run_s: float | None = None

    @property
    def size(self) -> int:
        """Runs the pool may have under way: `per_slot` per slot, or as many as fill
        `ahead_s` at the pool's recent mean run duration when that is more (short runs
        would otherwise leave workers idle for the admission's Kafka round trip, and at most
        `ahead_s` of work per slot then stands before a run admitted later)."""
        per_slot = self.policy.per_slot
        if self.mean_run_s is not None:
            by_time = self.policy.ahead_s / max(self.mean_run_s, 1e-3)
            per_slot = max(per_slot, min(by_time, MAX_PER_SLOT))
        return math.ceil(self.slots * per_slot)

    def admits(self) -> bool:
        """Whether one more run may go to the pool now."""
        return self.under_way < self.size

    def take(self) -> None:
        """Count a run just admitted."""
        self.under_way += 1


async def windows(
    db: Db, deployment: str, categories: Sequence[str], policy: Policy
) -> dict[tuple[str, str], Window]:
    """(category, pool) → its window, for every pool of `categories` with a live worker or
    a run under way; any other pool's is empty (`window_of`)."""
    found = await pool_capacities(db, deployment, categories)
    under_way = await runs_store.under_way(db, deployment, categories)
    durations = await runs_store.recent_run_seconds(db, deployment, categories)
    empty = Capacity()
    return {
        key: Window(
            workers=found.get(key, empty).workers,
            slots=found.get(key, empty).slots,
            under_way=under_way.get(key, 0),
            policy=policy,
            mean_run_s=durations.get(key),
        )
        for key in found.keys() | under_way.keys()
    }


def window_of(
    found: dict[tuple[str, str], Window], category: str, pool: str, policy: Policy
) -> Window:
    """The window of one pool of `found`, an empty one added for a pool it lacks."""
    return found.setdefault((category, pool), Window(0, 0, 0, policy))
