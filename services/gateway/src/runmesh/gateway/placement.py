"""Placing runs on pools of workers (issue 17 item 2, docs/operations.md "Pools and labels").

A run with a `Placement` goes to the first of its pools (any pool, `default` first, when it
names none) whose live workers of its category all carry its labels; a run without one goes
to the default pool. `place()` is the one decision of the dispatcher and the queue reasons:
where a held run goes once its pool has room, or why it waits for more than room (no live
pool fits its placement, or its tenant is at its limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.run_policy import Placement
from runmesh.gateway.tenant_limits import TenantLimit, Usage, running_block

LivePools: TypeAlias = Mapping[str, Sequence[frozenset[str]]]
"""Pool → the label sets of its live serving workers (of one category)."""


def choose_pool(placement: Placement | None, live: LivePools) -> str | None:
    """The pool a run goes to now, or None while no live pool fits it."""
    if placement is None:
        return DEFAULT_POOL
    candidates = placement.pools or sorted(live, key=lambda pool: (pool != DEFAULT_POOL, pool))
    wanted = set(placement.labels)
    for pool in candidates:
        workers = live.get(pool)
        # Every worker of a pool shares its topic: each must be able to run what it takes.
        if workers and all(wanted <= labels for labels in workers):
            return pool
    return None


def held_reason(category: str, placement: Placement) -> str:
    """Why a held run waits: no live pool of its category fits its placement."""
    where = ""
    if placement.pools:
        where += f" in pool {' or '.join(placement.pools)}"
    if placement.labels:
        where += f" with labels {', '.join(placement.labels)}"
    return f"waiting for a worker of {category}{where} (none is live)"


def place(
    category: str,
    placement: Placement | None,
    live: LivePools,
    limits: Sequence[TenantLimit] | None = None,
    usage: Usage | None = None,
) -> tuple[str | None, str | None]:
    """Where a run goes now, `(pool, None)`, or why it is held, `(None, reason)`: no live pool
    fits its placement, or its tenant (`limits`, `usage`) is at its `max_running`. The one
    decision of the submission, the dispatcher and the queue reasons."""
    pool = choose_pool(placement, live)
    if pool is None:
        assert placement is not None  # without one, the default pool always fits
        return None, held_reason(category, placement)
    if limits and usage is not None and (blocked := running_block(limits, usage, category)):
        return None, blocked
    return pool, None


def stored_placement(row: Mapping[str, object]) -> Placement | None:
    """A run row's `placement` column as a `Placement` (null: none)."""
    found = row.get("placement")
    return None if found is None else Placement.model_validate(found)
