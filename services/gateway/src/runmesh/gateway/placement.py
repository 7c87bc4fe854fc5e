"""Placing runs on pools of workers (issue 17 item 2, docs/operations.md "Pools and labels").

A run with a `Placement` goes to the first of its pools (any pool, `default` first, when it
names none) whose live workers of its category all carry its labels; a run without one goes
to the default pool. `place()` is the one decision of the dispatcher and the queue reasons:
where a held run goes once its pool has room, or why it waits for more than room (no live
pool fits its placement, or its tenant is at its limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.run_policy import Placement, Resources
from runmesh.gateway.runs_store import Db
from runmesh.gateway.tenant_limits import (
    TenantLimit,
    Usage,
    limits_of,
    lock_tenant,
    running_block,
    usage_of,
)
from runmesh.gateway.worker_presence import LivePools, Offer, live_pools


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


@dataclass(slots=True)
class Placer:
    """`place()` for stored runs (`tenant`, `category`, `placement`, `resources`): the live
    pools of their categories and the limits and usage of their limited tenants, read once
    for a batch of runs (the dispatcher's, or a page of queue views)."""

    live: Mapping[str, LivePools]
    limits: Mapping[str, Sequence[TenantLimit]]
    usages: dict[str, Usage]

    @classmethod
    async def load(
        cls, db: Db, deployment: str, rows: Sequence[Mapping[str, Any]], *, lock: bool
    ) -> Placer:
        """What placing `rows` needs; with `lock`, each limited tenant's admissions are
        serialised until the caller's transaction ends (`lock_tenant`)."""
        live = await live_pools(db, deployment, sorted({row["category"] for row in rows}))
        limits = await limits_of(db, [row["tenant"] for row in rows])
        usages: dict[str, Usage] = {}
        for tenant in sorted(limits):  # in one order: two dispatchers never deadlock
            if lock:
                await lock_tenant(db, tenant)
            usages[tenant] = await usage_of(db, tenant)
        return cls(live, limits, usages)

    def place(self, row: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """`place()` of one stored run."""
        tenant, category = str(row["tenant"]), str(row["category"])
        return place(
            category,
            stored_placement(row),
            self.live.get(category, {}),
            self.limits.get(tenant),
            self.usages.get(tenant),
            stored_resources(row),
        )

    def started(self, row: Mapping[str, Any]) -> None:
        """Count a run just admitted as under way: the next of its tenant sees it."""
        usage = self.usages.get(str(row["tenant"]))
        if usage is not None:
            category = str(row["category"])
            usage.under_way[category] = usage.under_way.get(category, 0) + 1


def stored_placement(row: Mapping[str, object]) -> Placement | None:
    """A run row's `placement` column as a `Placement` (null: none)."""
    found = row.get("placement")
    return None if found is None else Placement.model_validate(found)


def stored_resources(row: Mapping[str, object]) -> Resources | None:
    """A run row's `resources` column as `Resources` (null: none)."""
    found = row.get("resources")
    return None if found is None else Resources.model_validate(found)
