"""Placing runs on pools of workers (issue 17 item 2, docs/operations.md "Pools and labels").

A run with a `Placement` goes to the first of its pools (any pool, `default` first, when it
names none) whose live workers of its category all carry its labels; a run without one goes
to the default pool. `place()` is the one decision of the dispatcher and the queue reasons:
where a held run goes once its pool has room, or why it waits for more than room (no live
pool fits its placement, or its tenant is at its limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.run_policy import Placement, Resources
from runmesh.gateway.tenant_limits import TenantLimit, Usage, running_block
from runmesh.gateway.worker_presence import LivePools, Offer


def choose_pool(
    placement: Placement | None, live: LivePools, resources: Resources | None = None
) -> str | None:
    """The pool a run goes to now, or None while no live pool fits it."""
    needs = resources is not None and (resources.gpus > 0 or resources.memory_mb > 0)
    if placement is None and not needs:
        return DEFAULT_POOL
    placement = placement or Placement()
    candidates = placement.pools or sorted(live, key=lambda pool: (pool != DEFAULT_POOL, pool))
    for pool in candidates:
        workers = live.get(pool)
        # Every worker of a pool shares its topic: each must be able to run what it takes.
        if workers and all(_fits(placement, resources, offer) for offer in workers):
            return pool
    return None


def _fits(placement: Placement, resources: Resources | None, offer: Offer) -> bool:
    if not set(placement.labels) <= offer.labels:
        return False
    return resources is None or (
        resources.gpus <= offer.gpus and resources.memory_mb <= offer.memory_mb
    )


def held_reason(category: str, placement: Placement | None, resources: Resources | None) -> str:
    """Why a held run waits: no live pool of its category fits its placement and resources."""
    where = ""
    if placement is not None and placement.pools:
        where += f" in pool {' or '.join(placement.pools)}"
    if placement is not None and placement.labels:
        where += f" with labels {', '.join(placement.labels)}"
    offering = []
    if resources is not None and resources.gpus:
        offering.append(f"{resources.gpus} GPU" + ("s" if resources.gpus != 1 else ""))
    if resources is not None and resources.memory_mb:
        offering.append(f"{resources.memory_mb} MiB of memory")
    if offering:
        where += f" offering {' and '.join(offering)}"
    return f"waiting for a worker of {category}{where} (none is live)"


def place(
    category: str,
    placement: Placement | None,
    live: LivePools,
    limits: Sequence[TenantLimit] | None = None,
    usage: Usage | None = None,
    resources: Resources | None = None,
) -> tuple[str | None, str | None]:
    """Where a run goes once its pool has room, `(pool, None)`, or why it waits for more,
    `(None, reason)`: no live pool fits its placement and resources, or its tenant
    (`limits`, `usage`) is at its `max_running`. The one decision of the dispatcher and the
    queue reasons."""
    pool = choose_pool(placement, live, resources)
    if pool is None:
        return None, held_reason(category, placement, resources)
    if limits and usage is not None and (blocked := running_block(limits, usage, category)):
        return None, blocked
    return pool, None


def place_row(
    row: Mapping[str, object],
    live: Mapping[str, LivePools],
    limits: Mapping[str, Sequence[TenantLimit]],
    usages: Mapping[str, Usage],
) -> tuple[str | None, str | None]:
    """`place()` of a stored run (`tenant`, `category`, `placement`, `resources`), given the
    live pools of each category and the limits and usage of each limited tenant."""
    tenant, category = str(row["tenant"]), str(row["category"])
    return place(
        category,
        stored_placement(row),
        live.get(category, {}),
        limits.get(tenant),
        usages.get(tenant),
        stored_resources(row),
    )


def stored_placement(row: Mapping[str, object]) -> Placement | None:
    """A run row's `placement` column as a `Placement` (null: none)."""
    found = row.get("placement")
    return None if found is None else Placement.model_validate(found)


def stored_resources(row: Mapping[str, object]) -> Resources | None:
    """A run row's `resources` column as `Resources` (null: none)."""
    found = row.get("resources")
    return None if found is None else Resources.model_validate(found)
