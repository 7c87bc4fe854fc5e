"""The dispatcher: every run the gateway stores waits held in PostgreSQL until it admits it
onto a pool's requests topic (docs/operations.md "Pools and labels", "Tenant limits",
"Priorities and fair shares").

It admits held runs in order — higher priority first, then the smallest fair share (the runs
its tenant had lately plus its held runs ahead), then the oldest — each once a live pool fits
its placement and resources, its tenant is under its limit and that pool's window has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg

from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.admission import Policy, Window, window_of, windows
from runmesh.gateway.placement import Placer
from runmesh.gateway.runs_store import DB_TIMEOUT_S

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0
"""How late a held run is admitted after room appeared on another replica (the replica that
stored a worker's announcement, a run's end or a submission wakes its dispatcher at once)."""
BATCH_SIZE: Final = 500
"""Held runs locked and judged at a time."""
SCAN_LIMIT: Final = 20_000
"""Held runs one pass looks at, at most (the first, in the order they are admitted)."""

# The held request was stored with the default topic; it goes out on its pool's instead.
_RELEASE = """
UPDATE runs.outbox AS o SET topic = r.topic, held = false
FROM unnest($1::text[], $2::text[]) AS r(key, topic)
WHERE o.held AND o.key = r.key
"""
# One dispatcher of a deployment at a time: two would both see the same room in a window.
_LOCK_DEPLOYMENT = "SELECT pg_advisory_xact_lock(hashtext('runmesh.dispatch'), hashtext($1))"


class Dispatcher:
    """Admits held runs onto their pools' topics (see the module's docstring).

    Every gateway replica runs one; they take turns per deployment, and rows are claimed with
    `FOR UPDATE SKIP LOCKED`, so a run is admitted once, and a cancel (which locks the run's
    row) either comes first — the run is no longer queued — or waits until the admission
    committed and then withdraws it.
    """

    def __init__(
        self,
        topics: Topics,
        pool: asyncpg.Pool,
        *,
        policy: Policy,
        on_release: Callable[[], None],
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._topics = topics
        self._pool = pool
        self._policy = policy
        self._on_release = on_release
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self.released = 0
        """Runs this instance admitted."""

    def wake(self) -> None:
        """Look now: a run was stored or ended, or the live workers changed."""
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until cancelled; raises on a lasting PostgreSQL failure (the gateway's
        supervisor restarts it)."""
        while True:
            self._wake.clear()
            if await self.dispatch_once():
                self._on_release()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()

    async def dispatch_once(self) -> int:
        """Admit the held runs that may start now, looking at up to `SCAN_LIMIT` of them in
        order, so a run whose pool is full does not hold back one behind it bound elsewhere;
        how many were admitted."""
        deployment = self._topics.prefix
        admitted = 0
        async with self._pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
            await conn.execute(_LOCK_DEPLOYMENT, deployment, timeout=DB_TIMEOUT_S)
            categories = await runs_store.held_categories(conn, deployment)
            if not categories:
                return 0  # nothing held: the common case of a wake-up on a run's end
            room = await windows(conn, deployment, categories, self._policy)
            if not any(window.admits() for window in room.values()):
                return 0  # every pool is full, or none is live: nothing can go
            order = await runs_store.held_in_order(conn, deployment, SCAN_LIMIT)
            for first in range(0, len(order), BATCH_SIZE):
                held = await runs_store.lock_held_runs(conn, order[first : first + BATCH_SIZE])
                chosen = await self._choose(conn, held, room)
                if chosen:
                    # Stored before the next batch is chosen: its tenants' usage counts these.
                    keys = list(chosen)
                    await runs_store.set_pools(conn, keys, [pool for pool, _ in chosen.values()])
                    topics = [topic for _, topic in chosen.values()]
                    await conn.execute(_RELEASE, keys, topics, timeout=DB_TIMEOUT_S)
                    admitted += len(chosen)
                if not any(window.admits() for window in room.values()):
                    break
        self.released += admitted
        return admitted

    async def _choose(
        self,
        conn: asyncpg.Connection,
        held: list[dict[str, Any]],
        room: dict[tuple[str, str], Window],
    ) -> dict[str, tuple[str, str]]:
        """Which of `held` (locked, in order) may go now, and where: run id → (pool, topic);
        `room` counts the ones it lets go."""
        if not held:
            return {}
        placer = await Placer.load(conn, self._topics.prefix, held, lock=True)
        chosen: dict[str, tuple[str, str]] = {}
        for row in held:
            category = row["category"]
            pool, _ = placer.place(row)
            if pool is None:
                continue
            window = window_of(room, category, pool, self._policy)
            if not window.admits():
                continue
            window.take()
            placer.started(row)
            chosen[str(row["id"])] = (pool, self._topics.requests(category, pool))
        return chosen
