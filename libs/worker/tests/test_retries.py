"""Retries after a retryable failure, without servers: the policy, the backoff, the wait."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from runmesh.core.events import RunRequest, decode_event
from runmesh.core.settings import Settings
from runmesh.execution import Cancelled, Failed, StopSignal
from runmesh.plugins.registry import PluginRegistry
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.ledger import Claim
from runmesh.worker.metrics import WorkerMetrics
from runmesh.worker.retries import Retries, RunPolicy

FLAKY = Failed("Flaky", "the service blinked", traceback="tb", retryable=True)


class RecordingPublisher:
    """In-memory stand-in for `Publisher.send_raw` that acknowledges every send at once."""

    max_message_bytes = 1 << 20

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_raw(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def types(self) -> list[str]:
        return [decode_event(value).type for value in self.sent]


class Harness:
    """`Retries` of a worker with no plugins, one running run and a recording emitter."""

    def __init__(self, **settings: Any) -> None:
        defaults = {"max_attempts": 3, "retry_backoff_s": 0.0, "retry_backoff_max_s": 60.0}
        self.request = RunRequest(category="test", action="flaky")
        self.stop = StopSignal()
        self.running = {self.request.run_id: self.stop}
        self.stopping = asyncio.Event()
        self.retries = Retries(
            "test",
            PluginRegistry(),
            Settings(**defaults | settings).worker,
            WorkerMetrics(),
            self.running,
            self.stopping,
        )
        self.publisher = RecordingPublisher()
        self.claims: list[list[uuid.UUID]] = []

    def emitter(self, attempt: int) -> RunEmitter:
        return RunEmitter(
            self.publisher,  # type: ignore[arg-type]
            topic="events",
            run_id=self.request.run_id,
            attempt=attempt,
            service="test",
            worker="w",
            category="test",
            tenant="t",
            headers=[],
            metrics=WorkerMetrics(),
        )

    async def claim(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, Claim]:
        self.claims.append(run_ids)
        return {run_id: Claim(run_id, 2, None, None) for run_id in run_ids}

    async def after(self, failure: Failed, attempt: int = 1) -> object:
        claim = Claim(self.request.run_id, attempt, None, None)
        emitter = self.emitter(attempt)
        return await self.retries.after(failure, self.request, claim, emitter, self.claim)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (7, 5.0, 10.0), (100, 5.0, 10.0)],
)
def test_the_backoff_doubles_with_equal_jitter_up_to_the_cap(
    attempt: int, low: float, high: float
) -> None:
    policy = RunPolicy(max_attempts=100, limit_source="x", backoff_s=1.0, backoff_max_s=10.0)
    assert policy.delay_s(attempt, rng=lambda: 0.0) == low
    assert policy.delay_s(attempt, rng=lambda: 1.0) == high
    assert low <= policy.delay_s(attempt) <= high


def test_the_last_failure_names_how_often_the_run_was_tried() -> None:
    policy = RunPolicy(
        max_attempts=3, limit_source="RUNMESH_MAX_ATTEMPTS", backoff_s=1.0, backoff_max_s=1.0
    )
    assert policy.exhausted(FLAKY, 3).message == (
        "the service blinked (tried 3 times; RUNMESH_MAX_ATTEMPTS allows 3)"
    )
    assert policy.exhausted(FLAKY, 1).message.endswith(
        "(tried once; RUNMESH_MAX_ATTEMPTS allows 3)"
    )
    assert policy.exhausted(FLAKY, 3).retryable and policy.exhausted(FLAKY, 3).traceback == "tb"


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ({}, (3, "RUNMESH_MAX_ATTEMPTS", 1.0)),  # the platform's
        ({"max_attempts": 2, "retry_backoff_s": 0.5}, (2, "the request's max_attempts", 0.5)),
        ({"max_attempts": 9, "retry_backoff_s": 0.0}, (3, "RUNMESH_MAX_ATTEMPTS", 0.0)),  # capped
    ],
)
def test_a_requests_own_policy_applies_within_the_platforms(
    own: dict[str, Any], expected: tuple[int, str, float]
) -> None:
    harness = Harness(retry_backoff_s=1.0, retry_backoff_max_s=30.0)
    policy = harness.retries.policy(RunRequest(category="test", action="flaky", **own))
    assert (policy.max_attempts, policy.limit_source, policy.backoff_s) == expected
    assert policy.backoff_max_s == 30.0


async def test_a_failure_that_is_not_retryable_or_came_with_a_stop_ends_the_run() -> None:
    harness = Harness()
    fatal = Failed("ValueError", "bad input")
    assert await harness.after(fatal) == fatal
    harness.stop.request("cancel", "by user")
    assert await harness.after(FLAKY) == FLAKY
    assert harness.publisher.sent == [] and harness.claims == []


async def test_a_retryable_failure_with_no_attempt_left_ends_the_run() -> None:
    harness = Harness()
    ended = await harness.after(FLAKY, attempt=3)
    assert isinstance(ended, Failed) and ended.message.endswith(
        "(tried 3 times; RUNMESH_MAX_ATTEMPTS allows 3)"
    )
    assert harness.publisher.sent == []


async def test_a_retry_is_announced_then_claimed_with_a_fresh_stop_signal() -> None:
    harness = Harness()
    after = await harness.after(FLAKY)
    assert after == Claim(harness.request.run_id, 2, None, None)
    assert harness.claims == [[harness.request.run_id]]
    assert harness.publisher.types() == ["run.log", "run.retrying"]
    line, notice = (decode_event(value) for value in harness.publisher.sent)
    assert line.payload.message == (  # type: ignore[union-attr]
        "attempt 1 failed (retryable): Flaky: the service blinked; attempt 2 of 3 in 0.00 s"
    )
    assert (notice.seq, notice.payload.next_attempt) == (2, 2)  # type: ignore[union-attr]
    assert harness.running[harness.request.run_id] is not harness.stop


async def test_a_cancel_during_the_wait_ends_the_run_cancelled_at_once() -> None:
    harness = Harness(retry_backoff_s=60.0)
    asyncio.get_running_loop().call_later(0.05, harness.stop.request, "cancel", "by user")
    async with asyncio.timeout(5):
        assert await harness.after(FLAKY) == Cancelled("by user")
    assert harness.claims == []


async def test_a_worker_stopping_during_the_wait_abandons_the_run() -> None:
    harness = Harness(retry_backoff_s=60.0)
    asyncio.get_running_loop().call_later(0.05, harness.stopping.set)
    async with asyncio.timeout(5):
        assert await harness.after(FLAKY) is None
    assert harness.claims == []
