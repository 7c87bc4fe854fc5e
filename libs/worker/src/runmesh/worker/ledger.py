"""Attempt bookkeeping in PostgreSQL: which attempt a delivery is, and whether the run ended."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from runmesh.core.batching import GroupCommitter
from runmesh.core.db.migrations import apply_migrations, load_migrations
from runmesh.core.retries import retried

SCHEMA = "worker"

_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_MAX_WAIT_S = 5.0  # between claims while PostgreSQL is away: how late runs resume after it


@dataclass(slots=True, frozen=True)
class Claim:
    """The ledger's answer for one delivered request."""

    run_id: uuid.UUID
    attempt: int
    state: str | None
    terminal_event: bytes | None

    @property
    def ended(self) -> bool:
        """True when an earlier attempt already ended the run."""
        return self.state is not None


class AttemptLedger:
    """Counts starts per run (exactly, across replicas) and stores each run's terminal event.

    A redelivered request (its worker died before committing) becomes attempt + 1; a request
    whose run already ended is not run again, only its stored terminal event is re-published.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._finisher: GroupCommitter[tuple[uuid.UUID, str, bytes]] = GroupCommitter(
            self._finish_many
        )

    async def migrate(self) -> None:
        """Create or upgrade the ledger's schema."""
        await apply_migrations(self._pool, SCHEMA, load_migrations("runmesh.worker"))

    async def claim_when_reachable(
        self, run_ids: Sequence[uuid.UUID], category: str, stopping: asyncio.Event
    ) -> dict[uuid.UUID, Claim] | None:
        """`claim`, tried again with backoff while PostgreSQL is unreachable, however long it
        is away (the runs wait for it); None once `stopping` is set while it is away."""

        def unreachable(exc: BaseException) -> bool:
            return isinstance(exc, _UNREACHABLE) and not stopping.is_set()

        try:
            return await retried(
                "ledger.claim",
                lambda: self.claim(run_ids, category),
                on=unreachable,
                attempts=None,
                wait_initial_s=0.1,
                wait_max_s=_MAX_WAIT_S,
            )
        except _UNREACHABLE:
            if stopping.is_set():
                return None
            raise

    async def claim(self, run_ids: Sequence[uuid.UUID], category: str) -> dict[uuid.UUID, Claim]:
        """Count a new attempt for every unfinished run; one round trip for a whole batch."""
        unique = list(dict.fromkeys(run_ids))
        async with self._pool.acquire() as conn, conn.transaction():
            started = await conn.fetch(
                """
                INSERT INTO worker.run_attempts AS r (run_id, category, attempts)
                SELECT id, $2, 1 FROM unnest($1::uuid[]) AS id
                ON CONFLICT (run_id) DO UPDATE
                    SET attempts = r.attempts + 1, updated_at = now()
                    WHERE r.state IS NULL
                RETURNING run_id, attempts AS attempt, state, terminal_event
                """,
                unique,
                category,
            )
            claims = {row["run_id"]: Claim(**dict(row)) for row in started}
            if len(claims) < len(unique):
                ended = await conn.fetch(
                    "SELECT run_id, attempts AS attempt, state, terminal_event"
                    " FROM worker.run_attempts"
                    " WHERE run_id = ANY($1::uuid[]) AND state IS NOT NULL",
                    [run_id for run_id in unique if run_id not in claims],
                )
                claims.update({row["run_id"]: Claim(**dict(row)) for row in ended})
        return claims

    async def finish(self, run_id: uuid.UUID, state: str, terminal_event: bytes) -> None:
        """Record how the run ended, after its terminal event was acknowledged.

        Runs finishing together share one UPDATE (group commit): at thousands of runs per
        second a round trip per run would make the database the bottleneck.
        """
        await self._finisher.submit((run_id, state, terminal_event))

    async def _finish_many(self, rows: list[tuple[uuid.UUID, str, bytes]]) -> None:
        run_ids, states, events = zip(*rows, strict=True)
        await self._pool.execute(
            """
            UPDATE worker.run_attempts AS r
            SET state = u.state, terminal_event = u.terminal_event, updated_at = now()
            FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS u(run_id, state, terminal_event)
            WHERE r.run_id = u.run_id
            """,
            list(run_ids),
            list(states),
            list(events),
        )
