"""Cancelling runs: at once while queued, through workers while running, and always in the end.

DESIGN §4: a queued run is cancelled at once; a running one gets a `CancelRun` on the
control topic (through the outbox) and its worker stops it; a running run whose cancel is
not confirmed within `RUNMESH_CANCEL_TIMEOUT_S` is ended `cancelled` by the gateway, so a
lost worker cannot leave it "cancelling" for ever (Prefect's stuck Cancelling).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from runmesh.common.events import TERMINAL_STATES, CancelRun
from runmesh.common.settings import Settings
from runmesh.common.topics import Topics
from runmesh.gateway.errors import Conflict, NotFound
from runmesh.gateway.outbox import CANCEL_EVENT_TYPE, CANCELLED_WHILE_QUEUED, enqueue

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "runmesh_events"
"""The channel the aggregator NOTIFYs after storing events; SSE streams LISTEN on it."""

_SWEEP_LIMIT = 500
_DB_TIMEOUT_S = 10.0

_NOTIFY_SQL = """
SELECT pg_notify($1, json_build_object(
    'tenant', $2::text,
    'run_id', $3::uuid,
    'last_id', (SELECT coalesce(max(e.id), 0) FROM runs.run_events e WHERE e.run_id = $3::uuid),
    'terminal', true
)::text)
"""


@dataclass(slots=True, frozen=True)
class CancelOutcome:
    """The run after a cancel request, and whether that request ended it already."""

    row: dict[str, Any]
    ended: bool


async def notify_terminal(conn: asyncpg.Connection, tenant: str, run_id: uuid.UUID) -> None:
    """Tell SSE streams (on commit) that the run ended, with its last stored event id."""
    await conn.execute(_NOTIFY_SQL, NOTIFY_CHANNEL, tenant, run_id, timeout=_DB_TIMEOUT_S)


async def cancel_run(
    conn: asyncpg.Connection,
    *,
    topics: Topics,
    tenant: str,
    run_id: uuid.UUID,
    reason: str,
) -> CancelOutcome:
    """Cancel one run of `tenant`; call inside a transaction (it locks the run's row).

    Queued: the run ends `cancelled` now; its request is kept from being published if the
    relay has not taken it yet, and a `CancelRun` still goes out for a worker that may hold
    the request already. Running: `cancel_requested_at` is set (the first request's time
    counts for the watchdog) and a `CancelRun` goes out. Ended: `Conflict`.
    """
    row = await conn.fetchrow(
        "SELECT * FROM runs.runs WHERE id = $1 AND tenant = $2 FOR UPDATE",
        run_id,
        tenant,
        timeout=_DB_TIMEOUT_S,
    )
    if row is None:
        raise NotFound(f"run {run_id} not found")
    if row["state"] in TERMINAL_STATES:
        raise Conflict(
            f"run {run_id} already ended ({row['state']}); only queued or running runs can be "
            "cancelled",
            state=row["state"],
        )
    ended = row["state"] == "queued"
    if ended:
        row = await conn.fetchrow(
            "UPDATE runs.runs SET state = 'cancelled', cancel_requested_at = now(),"
            " finished_at = now(), error = NULL, updated_at = now()"
            " WHERE id = $1 RETURNING *",
            run_id,
            timeout=_DB_TIMEOUT_S,
        )
        # Not published yet: never publish it, so no worker starts a cancelled run. A row the
        # relay holds right now is being published; the CancelRun below follows it.
        await conn.execute(
            "UPDATE runs.outbox SET sent_at = now(), last_error = $3"
            " WHERE id IN (SELECT id FROM runs.outbox WHERE sent_at IS NULL"
            " AND topic = $1 AND key = $2 FOR UPDATE SKIP LOCKED)",
            topics.requests(row["category"]),
            str(run_id),
            CANCELLED_WHILE_QUEUED,
            timeout=_DB_TIMEOUT_S,
        )
        await notify_terminal(conn, tenant, run_id)
    else:
        row = await conn.fetchrow(
            "UPDATE runs.runs SET cancel_requested_at = coalesce(cancel_requested_at, now()),"
            " updated_at = now() WHERE id = $1 RETURNING *",
            run_id,
            timeout=_DB_TIMEOUT_S,
        )
    await enqueue(
        conn,
        topic=topics.control,
        key=str(run_id),
        message=CancelRun(run_id=run_id, tenant=tenant, reason=reason),
        event_type=CANCEL_EVENT_TYPE,
    )
    return CancelOutcome(row=dict(row), ended=ended)


class CancelWatchdog:
    """Ends running runs whose cancel no worker confirmed within `cancel_timeout_s`.

    Every replica runs one; `FOR UPDATE SKIP LOCKED` keeps them from ending a run twice. A
    worker's late events of that attempt are stored by the aggregator but change nothing,
    since terminal states are final.
    """

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, *, interval_s: float | None = None
    ) -> None:
        self._timeout_s = settings.cancel_timeout_s
        self._pool = pool
        # A quarter of the timeout, at most 1 s: a run ends within 1.25 times the timeout.
        self._interval_s = interval_s or max(0.05, min(1.0, settings.cancel_timeout_s / 4))

    async def run(self) -> None:
        """Sweep until cancelled (errors propagate to the supervisor, which restarts it)."""
        while True:
            ended = await self.sweep()
            if ended:
                log.warning(
                    "ended %d runs whose cancel was not confirmed within %gs: %s",
                    len(ended),
                    self._timeout_s,
                    ", ".join(str(run_id) for run_id in ended),
                )
            await asyncio.sleep(self._interval_s)

    async def sweep(self) -> list[uuid.UUID]:
        """End every overdue cancelling run now; return their ids."""
        async with self._pool.acquire(timeout=_DB_TIMEOUT_S) as conn, conn.transaction():
            rows = await conn.fetch(
                """
                UPDATE runs.runs AS r
                SET state = 'cancelled', finished_at = now(), error = NULL, updated_at = now()
                WHERE r.id IN (
                    SELECT id FROM runs.runs
                    WHERE state = 'running' AND cancel_requested_at IS NOT NULL
                      AND cancel_requested_at < now() - make_interval(secs => $1)
                    ORDER BY cancel_requested_at
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                ) AND r.state = 'running'
                RETURNING r.id, r.tenant
                """,
                self._timeout_s,
                _SWEEP_LIMIT,
                timeout=_DB_TIMEOUT_S,
            )
            for row in rows:
                await notify_terminal(conn, row["tenant"], row["id"])
        return [row["id"] for row in rows]
