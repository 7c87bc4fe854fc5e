"""Cancelling runs: at once while queued, through workers while running, and always in the end.

DESIGN §4: a queued run is cancelled at once; a running one gets a `CancelRun` on the
control topic (through the outbox) and its worker stops it; a running run whose cancel is
not confirmed within `RUNMESH_CANCEL_TIMEOUT_S` is ended `cancelled` by the gateway, so a
lost worker cannot leave it "cancelling" for ever (Prefect's stuck Cancelling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from runmesh.core.events import TERMINAL_STATES, CancelRun
from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.errors import Conflict, NotFound
from runmesh.gateway.outbox import CANCEL_EVENT_TYPE, enqueue, withdraw_request
from runmesh.gateway.pipelines import store as pipeline_store
from runmesh.gateway.pipelines.forward import advance, step_forward

log = logging.getLogger(__name__)

_SWEEP_LIMIT = 500


@dataclass(slots=True, frozen=True)
class CancelOutcome:
    """The run after a cancel request, and whether that request ended it already."""

    row: dict[str, Any]
    ended: bool


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
    row = await runs_store.lock_run(conn, tenant, run_id)
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
        row = await runs_store.end_queued_run(conn, run_id)
        # Not published yet: never publish it, so no worker starts a cancelled run. A row the
        # relay holds right now is being published; the CancelRun below follows it.
        topic = topics.requests(row["category"], row.get("pool") or DEFAULT_POOL)
        await withdraw_request(conn, topic=topic, key=str(run_id))
        await runs_store.notify_ended(conn, {run_id: tenant})
        await advance(conn, topics, [run_id])  # a pipeline's step ended: its pipeline moves
    else:
        row = await runs_store.request_cancel(conn, run_id)
        if row["category"] == runs_store.PIPELINE_CATEGORY:
            await _cancel_steps(conn, topics, tenant, run_id, reason)
            row = await runs_store.get_run(conn, tenant, run_id) or row
    await enqueue(
        conn,
        topic=topics.control,
        key=str(run_id),
        message=CancelRun(run_id=run_id, tenant=tenant, reason=reason),
        event_type=CANCEL_EVENT_TYPE,
    )
    return CancelOutcome(row=row, ended=ended)


async def _cancel_steps(
    conn: asyncpg.Connection, topics: Topics, tenant: str, run_id: uuid.UUID, reason: str
) -> None:
    """A pipeline's cancel reaches its steps: each queued or running one is cancelled, the
    pending ones will never start, and the pipeline ends once none runs."""
    for step in await pipeline_store.steps_of(conn, run_id):
        if step.state != "submitted":
            continue
        with contextlib.suppress(Conflict, NotFound):  # ended meanwhile, or not stored yet
            await cancel_run(conn, topics=topics, tenant=tenant, run_id=step.run_id, reason=reason)
    await step_forward(conn, topics, run_id)


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
        self._topics = Topics(settings.topic_prefix)
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
        async with (
            self._pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
            conn.transaction(),
        ):
            ended = await runs_store.end_overdue_cancels(conn, self._timeout_s, _SWEEP_LIMIT)
            await runs_store.notify_ended(conn, ended)
            await advance(conn, self._topics, ended)
        return list(ended)
