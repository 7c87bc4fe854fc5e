"""Tenant limits (issue 17 item 4, docs/operations.md "Tenant limits"): how many runs of a
tenant may be under way at once and queued, over all its categories or per category.

A run is under way from the moment its request goes out to a pool until it ends; a queued
run held back by a limit is not. Limits are an operator's (`runmesh limits set`), stored in
`runs.tenant_limits`; a tenant reads its own with `GET /v1/limits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from runmesh.gateway.runs_store import DB_TIMEOUT_S, PIPELINE_CATEGORY, Db

ALL_CATEGORIES: Final = "*"
"""The `category` of a limit over all of a tenant's categories."""


@dataclass(slots=True, frozen=True)
class TenantLimit:
    """One limit of a tenant: over all its categories (`*`) or one."""

    tenant: str
    category: str
    max_running: int | None
    max_queued: int | None


@dataclass(slots=True)
class Usage:
    """A tenant's runs under way and queued, per category (pipelines' own runs not counted:
    their steps are runs of their own)."""

    under_way: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def count(counts: dict[str, int], category: str) -> int:
        """One category's count, or the total over all of them for `*`."""
        return sum(counts.values()) if category == ALL_CATEGORIES else counts.get(category, 0)


def running_block(limits: Sequence[TenantLimit], usage: Usage, category: str) -> str | None:
    """Why one more run of `category` may not start now, or None."""
    found = _reached(limits, category, "max_running", usage.under_way)
    if found is None:
        return None
    limit, count, of = found
    return f"tenant limit: {count} of {limit.max_running} runs{of} under way"


def queue_block(limits: Sequence[TenantLimit], usage: Usage, category: str) -> str | None:
    """Why one more run of `category` may not even be queued now, or None."""
    found = _reached(limits, category, "max_queued", usage.queued)
    if found is None:
        return None
    limit, count, of = found
    return (
        f"tenant {limit.tenant} has {count} runs{of} queued, its limit ({limit.max_queued}); "
        "submit again once some have started"
    )


def _reached(
    limits: Sequence[TenantLimit], category: str, bound: str, counts: dict[str, int]
) -> tuple[TenantLimit, int, str] | None:
    """The first limit applying to `category` whose `bound` its counts reached: the limit,
    the count, and ` of <category>` for a per-category limit."""
    for limit in limits:
        most = getattr(limit, bound)
        if limit.category not in (ALL_CATEGORIES, category) or most is None:
            continue
        count = Usage.count(counts, limit.category)
        if count >= most:
            return limit, count, "" if limit.category == ALL_CATEGORIES else f" of {category}"
    return None


async def limits_of(db: Db, tenants: Sequence[str]) -> dict[str, list[TenantLimit]]:
    """The limits of each of `tenants` that has any."""
    rows = await db.fetch(
        "SELECT tenant, category, max_running, max_queued FROM runs.tenant_limits"
        " WHERE tenant = ANY($1::text[]) ORDER BY tenant, category",
        sorted(set(tenants)),
        timeout=DB_TIMEOUT_S,
    )
    found: dict[str, list[TenantLimit]] = {}
    for row in rows:
        found.setdefault(row["tenant"], []).append(TenantLimit(**dict(row)))
    return found


async def usage_of(db: Db, tenant: str) -> Usage:
    """The tenant's runs under way and queued now."""
    rows = await db.fetch(
        "SELECT category,"
        " count(*) FILTER (WHERE state = 'running' OR pool IS NOT NULL) AS under_way,"
        " count(*) FILTER (WHERE state = 'queued') AS queued"
        " FROM runs.runs WHERE tenant = $1 AND state IN ('queued', 'running')"
        " AND category <> $2 GROUP BY category",
        tenant,
        PIPELINE_CATEGORY,
        timeout=DB_TIMEOUT_S,
    )
    usage = Usage()
    for row in rows:
        usage.under_way[row["category"]] = row["under_way"]
        usage.queued[row["category"]] = row["queued"]
    return usage


async def lock_tenant(db: Db, tenant: str) -> None:
    """Serialize the tenant's admissions until the caller's transaction ends: two
    submissions must not both take its last free place."""
    await db.execute(
        "SELECT pg_advisory_xact_lock(hashtext('runmesh.tenant-limit'), hashtext($1))",
        tenant,
        timeout=DB_TIMEOUT_S,
    )


async def set_limit(
    db: Db, tenant: str, category: str, *, max_running: int | None, max_queued: int | None
) -> None:
    """Set (or replace) one limit of a tenant."""
    await db.execute(
        "INSERT INTO runs.tenant_limits (tenant, category, max_running, max_queued)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, category) DO UPDATE SET"
        " max_running = EXCLUDED.max_running, max_queued = EXCLUDED.max_queued,"
        " updated_at = now()",
        tenant,
        category,
        max_running,
        max_queued,
        timeout=DB_TIMEOUT_S,
    )


async def remove_limit(db: Db, tenant: str, category: str) -> bool:
    """Remove one limit of a tenant; whether it existed."""
    status: str = await db.execute(
        "DELETE FROM runs.tenant_limits WHERE tenant = $1 AND category = $2",
        tenant,
        category,
        timeout=DB_TIMEOUT_S,
    )
    return status != "DELETE 0"


async def all_limits(db: Db, tenant: str | None = None) -> list[TenantLimit]:
    """Every limit (of one tenant), by tenant and category."""
    rows = await db.fetch(
        "SELECT tenant, category, max_running, max_queued FROM runs.tenant_limits"
        " WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, category",
        tenant,
        timeout=DB_TIMEOUT_S,
    )
    return [TenantLimit(**dict(row)) for row in rows]
