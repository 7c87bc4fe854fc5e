"""Trying a run again after a retryable failure: its attempt limit, its backoff, the wait.

An attempt that fails with a retryable error (`Failed(retryable=True)`, from an exception
whose class says `retriable = True`) while its run has attempts left ends with a warning
`run.log` and `run.retrying`; the same worker starts the next attempt after an exponential
backoff with jitter. The attempt limit is the one a lost worker's redelivery counts against
(the ledger's count of starts), so both kinds of retry share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runmesh.core.errors import UnknownPluginError
from runmesh.core.events import LogPayload, RetryingPayload, RunRequest
from runmesh.core.settings_parts import WorkerSettings
from runmesh.execution import Failed, Outcome, StopSignal
from runmesh.plugins.config import ActionConfig
from runmesh.plugins.registry import PluginRegistry
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.ledger import Claim
from runmesh.worker.metrics import WorkerMetrics

ClaimAttempts = Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, Claim] | None]]
"""The worker's ledger claim: a new attempt per run, or None when the worker stops first."""


@dataclass(slots=True, frozen=True)
class RunPolicy:
    """How often one run may start, and how long it waits between two attempts.

    `max_attempts` counts starts of every kind: a redelivery after a lost worker and a retry
    after a retryable failure alike; `limit_source` names what set it, for messages. The wait
    after attempt n is a random time between half and all of
    `min(backoff_max_s, backoff_s * 2 ** (n - 1))` ("equal jitter": runs that failed together,
    say in one outage, spread their retries out, yet each waits at least half its delay).
    """

    max_attempts: int
    limit_source: str
    backoff_s: float
    backoff_max_s: float

    def delay_s(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after attempt `attempt` failed, before attempt `attempt + 1` starts."""
        # The exponent is bounded so that a large limit cannot overflow the float.
        nominal = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempt - 1, 64))
        return nominal / 2 + nominal / 2 * rng()

    def exhausted(self, failure: Failed, attempts: int) -> Failed:
        """The run's last failure, naming how often it was tried."""
        tried = "once" if attempts == 1 else f"{attempts} times"
        return dataclasses.replace(
            failure,
            message=f"{failure.message} (tried {tried}; {self.limit_source} allows "
            f"{self.max_attempts})",
        )


class Retries:
    """Decides, announces and waits out the retries of one category's worker.

    Args:
        category: The worker's category.
        registry: The worker's own plugins, whose `config.yaml` may set an action's defaults.
        settings: The worker's settings: the platform's defaults and bounds.
        metrics: The worker's metrics (`runmesh_run_retries_total`).
        running: The worker's stop signals by run (a cancel requests its run's): a retried
            run's next attempt gets a fresh one, so no stop reaches an attempt that has ended.
        stopping: Set when the worker begins to stop: a run waiting to retry is abandoned.
    """

    def __init__(
        self,
        category: str,
        registry: PluginRegistry,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        running: dict[uuid.UUID, StopSignal],
        stopping: asyncio.Event,
    ) -> None:
        self.category = category
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self._running = running
        self._stopping = stopping
        self.rng: Callable[[], float] = random.random
        """Draws the jitter, uniform in [0, 1)."""

    def policy(self, request: RunRequest) -> RunPolicy:
        """The request's own `max_attempts` and `retry_backoff_s`, else its action's (a local
        one: a published version's are the platform's), else RUNMESH_MAX_ATTEMPTS and
        RUNMESH_RETRY_BACKOFF_S; never more attempts than RUNMESH_MAX_ATTEMPTS allows, and no
        wait longer than RUNMESH_RETRY_BACKOFF_MAX_S."""
        config: ActionConfig | None = None
        with contextlib.suppress(UnknownPluginError):
            _, action = self.registry.resolve_action(request.plugin, self.category, request.action)
            config = action.config
        platform = self.settings.max_attempts
        limit, source = request.max_attempts, "the request's max_attempts"
        if limit is None and config is not None and config.max_attempts is not None:
            limit, source = config.max_attempts, "the action's max_attempts"
        if limit is None or limit >= platform:
            limit, source = platform, "RUNMESH_MAX_ATTEMPTS"
        backoff = request.retry_backoff_s
        if backoff is None and config is not None:
            backoff = config.retry_backoff_s
        if backoff is None:
            backoff = self.settings.retry_backoff_s
        return RunPolicy(limit, source, backoff, self.settings.retry_backoff_max_s)

    async def after(
        self,
        failure: Failed,
        request: RunRequest,
        claim: Claim,
        emitter: RunEmitter,
        claim_attempts: ClaimAttempts,
    ) -> Claim | Outcome | None:
        """What follows a failed attempt: the next attempt's claim once its backoff has passed,
        or how the run ends instead (an outcome; None = abandoned for redelivery).

        A failure that is not retryable, or that came with a stop, ends the run as it is; with
        no attempt left, it ends the run saying how often it was tried. Otherwise the attempt
        ends with a warning line and `run.retrying`, and the wait holds the run's slot on this
        worker (a scheduler could re-queue the request with a not-before time instead; none
        exists yet). A cancel during the wait ends the run `cancelled` in this attempt at once.
        A worker that begins to stop abandons the run: its request is delivered again, and the
        next attempt starts there without the rest of the wait.
        """
        run_id = request.run_id
        stop = self._running[run_id]
        if not failure.retryable or stop.requested:
            return failure
        policy = self.policy(request)
        if claim.attempt >= policy.max_attempts:
            return policy.exhausted(failure, claim.attempt)
        delay = policy.delay_s(claim.attempt, self.rng)
        await emitter.retry_later(*retry_notice(failure, claim.attempt, policy, delay))
        if await _backoff(delay, stop, self._stopping):
            claims = await claim_attempts([run_id])
            # Checked after the claim, with no await before the swap: a cancel that came while
            # the claim was written still wins, and none can fall between the two signals.
            if claims is not None and not stop.requested:
                self._running[run_id] = StopSignal()
                self.metrics.child(self.metrics.run_retries, self.category).inc()
                return claims[run_id]
        if stop.requested and stop.kind != "shutdown":
            return stop.outcome()
        return None


def retry_notice(
    failure: Failed, attempt: int, policy: RunPolicy, delay_s: float
) -> tuple[LogPayload, RetryingPayload]:
    """The warning line for people and the `run.retrying` payload that end a retried attempt."""
    wait = f"{delay_s:.1f}" if delay_s >= 1 else f"{delay_s:.2f}"
    line = LogPayload(
        level="warning",
        message=f"attempt {attempt} failed (retryable): {failure.error_type}: {failure.message}; "
        f"attempt {attempt + 1} of {policy.max_attempts} in {wait} s",
    )
    notice = RetryingPayload(
        error_type=failure.error_type,
        message=failure.message,
        traceback=failure.traceback,
        next_attempt=attempt + 1,
        max_attempts=policy.max_attempts,
        delay_s=delay_s,
    )
    return line, notice


async def _backoff(delay_s: float, stop: StopSignal, stopping: asyncio.Event) -> bool:
    """Wait `delay_s`; False as soon as the run is stopped or the worker begins to stop."""
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        done, _ = await asyncio.wait(waits, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return not done
