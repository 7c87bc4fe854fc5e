"""The schedule loop: every gateway replica fires the schedules whose tick has come."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from runmesh.core.events import TERMINAL_STATES
from runmesh.gateway import runs_store
from runmesh.gateway.cancellation import cancel_run
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import GatewayError
from runmesh.gateway.pipelines.start import SubmitPipeline, start_pipeline
from runmesh.gateway.run_submission import SubmitRun, submit
from runmesh.gateway.schedules import store
from runmesh.gateway.schedules.spec import next_tick

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0
"""How late a tick may fire (the loop looks for due schedules this often)."""
BATCH: Final = 50


class ScheduleLoop:
    """Fires due schedules. A replica claims a due row (`FOR UPDATE SKIP LOCKED`), submits
    its run under the idempotency key `schedule-<id>-<tick>`, and moves `next_at` to the next
    tick after now in the same transaction: a tick fires once however many replicas run, and
    ticks missed while every gateway was down fire once, not once each."""

    def __init__(self, deps: Deps, *, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self._deps = deps
        self._poll_interval_s = poll_interval_s

    async def run(self) -> None:
        """Fire until cancelled; raises on a lasting PostgreSQL failure (the supervisor
        restarts it)."""
        while True:
            await self.fire_due()
            await asyncio.sleep(self._poll_interval_s)

    async def fire_due(self) -> int:
        """Fire every due schedule once; how many ticks were handled."""
        pool = self._deps.pool
        async with pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn, conn.transaction():
            due = await store.claim_due(conn, BATCH)
            for schedule in due:
                run_id, skipped, error = await self._tick(schedule)
                now = datetime.now(UTC)
                later = next_tick(schedule["cron"], schedule["timezone"], now)
                await store.record_tick(
                    conn, schedule["id"], next_at=later, run_id=run_id, skipped=skipped, error=error
                )
        return len(due)

    async def _tick(self, schedule: dict[str, Any]) -> tuple[uuid.UUID | None, bool, str | None]:
        """(the run it made, whether it skipped, why it made none)."""
        tenant, previous = schedule["tenant"], schedule["last_run_id"]
        if previous is not None and schedule["overlap"] != "queue":
            state = await runs_store.run_state(self._deps.pool, previous, tenant)
            if state is not None and state not in TERMINAL_STATES:
                if schedule["overlap"] == "skip":
                    return None, True, None
                await self._cancel(tenant, previous, schedule["name"])
        key = f"schedule-{schedule['id']}-{schedule['next_at']:%Y%m%dT%H%M%S}"
        submission = schedule["submission"]
        try:
            if "run" in submission:
                body = SubmitRun.model_validate(submission["run"])
                row, _ = await submit(self._deps, tenant, body, key, {})
            else:
                spec = SubmitPipeline.model_validate(submission["pipeline"])
                row, _ = await start_pipeline(self._deps, tenant, spec, key)
        except GatewayError as exc:
            log.warning("schedule %s: tick submitted nothing: %s", schedule["id"], exc.detail)
            return None, False, exc.detail[:1000]
        return row["id"], False, None

    async def _cancel(self, tenant: str, run_id: uuid.UUID, name: str) -> None:
        reason = f"cancelled by schedule {name}: its next tick came (overlap cancel_previous)"
        async with (
            self._deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
            conn.transaction(),
        ):
            try:
                await cancel_run(
                    conn, topics=self._deps.topics, tenant=tenant, run_id=run_id, reason=reason
                )
            except GatewayError:  # it ended meanwhile
                return
        self._deps.relay.wake()
