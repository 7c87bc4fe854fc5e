"""The dispatcher of held runs: a queued run that no live pool could take when it was
submitted, or that its tenant's limit held back, is released onto a pool's requests topic as
soon as one can take it and its tenant is under its limit (docs/operations.md "Pools and
labels", "Tenant limits")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import asyncpg

from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.placement import place, stored_placement
from runmesh.gateway.runs_store import DB_TIMEOUT_S
from runmesh.gateway.tenant_limits import Usage, limits_of, lock_tenant, usage_of
from runmesh.gateway.worker_presence import live_pools

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0
"""How late a held run is released after a fitting worker appeared, or a run of its tenant
ended, on another replica (the replica that stored the announcement or the run's end wakes
its dispatcher at once)."""
BATCH_SIZE: Final = 500

# The held request was stored with the default topic; it goes out on its pool's instead.
_RELEASE = """
UPDATE runs.outbox AS o SET topic = r.topic, held = false
FROM unnest($1::text[], $2::text[]) AS r(key, topic)
WHERE o.held AND o.key = r.key
"""


class PlacementDispatcher:
    """Releases held runs onto the first pool that fits them, oldest first, each while its
    tenant is under its `max_running` (counting the runs released before it).

    Every gateway replica runs one; rows are claimed with `FOR UPDATE SKIP LOCKED`, so a run
    is released once, and a cancel (which locks the run's row) either comes first — the run
    is no longer queued — or waits until the release committed and then withdraws it.
    """

    def __init__(
        self,
        topics: Topics,
        pool: asyncpg.Pool,
        *,
        on_release: Callable[[], None],
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._topics = topics
        self._pool = pool
        self._on_release = on_release
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self.released = 0
        """Runs this instance released."""

    def wake(self) -> None:
        """Look now: the live workers changed."""
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until cancelled; raises on a lasting PostgreSQL failure (the gateway's
        supervisor restarts it)."""
        while True:
            released = await self.dispatch_once()
            if released:
                self._on_release()
            if released == BATCH_SIZE:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def dispatch_once(self) -> int:
        """Release the held runs that a live pool fits now; how many."""
        async with self._pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
            held = await runs_store.lock_held_runs(conn, BATCH_SIZE)
            if not held:
                return 0
            live = await live_pools(conn, [row["category"] for row in held])
            limits = await limits_of(conn, [row["tenant"] for row in held])
            usages: dict[str, Usage] = {}
            for tenant in sorted(limits):  # in one order: two dispatchers never deadlock
                await lock_tenant(conn, tenant)
                usages[tenant] = await usage_of(conn, tenant)
            chosen: dict[str, tuple[str, str]] = {}  # run id → (its pool, its pool's topic)
            for row in held:
                tenant, category = row["tenant"], row["category"]
                pool, _ = place(
                    category,
                    stored_placement(row),
                    live.get(category, {}),
                    limits.get(tenant),
                    usages.get(tenant),
                )
                if pool is None:
                    continue
                if tenant in usages:  # it is under way now: the next of its tenant counts it
                    under_way = usages[tenant].under_way
                    under_way[category] = under_way.get(category, 0) + 1
                chosen[str(row["id"])] = (pool, self._topics.requests(category, pool))
            if not chosen:
                return 0
            keys = list(chosen)
            await runs_store.set_pools(conn, keys, [pool for pool, _ in chosen.values()])
            await conn.execute(
                _RELEASE, keys, [topic for _, topic in chosen.values()], timeout=DB_TIMEOUT_S
            )
        self.released += len(chosen)
        log.info("released %d held runs onto their pools", len(chosen))
        return len(chosen)
