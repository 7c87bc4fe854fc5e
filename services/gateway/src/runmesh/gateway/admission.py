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

from runmesh.gateway import runs_store
from runmesh.gateway.runs_store import Db
from runmesh.gateway.worker_presence import Capacity, pool_capacities


@dataclass(slots=True)
class Window:
    """One pool's window of a category: its live workers' slots and its runs under way."""

    workers: int
    slots: int
    under_way: int
    per_slot: float

    @property
    def size(self) -> int:
        """Runs the pool may have under way."""
        return math.ceil(self.slots * self.per_slot)

    def admits(self) -> bool:
        """Whether one more run may go to the pool now."""
        return self.under_way < self.size

    def take(self) -> None:
        """Count a run just admitted."""
        self.under_way += 1


async def windows(
    db: Db, deployment: str, categories: Sequence[str], per_slot: float
) -> dict[tuple[str, str], Window]:
    """(category, pool) → its window, for every pool of `categories` with a live worker or
    a run under way; any other pool's is empty (`window_of`)."""
    found = await pool_capacities(db, deployment, categories)
    under_way = await runs_store.under_way(db, deployment, categories)
    empty = Capacity()
    return {
        key: Window(
            workers=found.get(key, empty).workers,
            slots=found.get(key, empty).slots,
            under_way=under_way.get(key, 0),
            per_slot=per_slot,
        )
        for key in found.keys() | under_way.keys()
    }


def window_of(
    found: dict[tuple[str, str], Window], category: str, pool: str, per_slot: float
) -> Window:
    """The window of one pool of `found`, an empty one added for a pool it lacks."""
    return found.setdefault((category, pool), Window(0, 0, 0, per_slot))
