"""Retries after a retryable failure, against a real broker, PostgreSQL and gateway: the next
attempt after a backoff, the attempt limit, the platform's cap, a cancel or a shutdown during
the wait, and the run as the gateway shows it."""

from __future__ import annotations

import time
import uuid

from runmesh.core.events import RetryingPayload, RunEventBase, RunFailed, RunLog, RunSucceeded

from .conftest import GatewayHandle, RunClient, WorkerFactory
from .test_gateway_api import api, submit, wait_for_plugins, wait_state

RETRY_LOG = "attempt 1 failed (retryable): FlakyError: attempt 1 met a flaky service; attempt 2"


def _of(client: RunClient, run_id: uuid.UUID, attempt: int) -> list[RunEventBase]:
    return [event for event in client.events[run_id] if event.attempt == attempt]


def _retrying(client: RunClient, run_id: uuid.UUID) -> list[RetryingPayload]:
    return [
        event.payload  # type: ignore[attr-defined]
        for event in client.events[run_id]
        if event.type == "run.retrying"
    ]


def _seqs_gapless(events: list[RunEventBase]) -> bool:
    return [event.seq for event in events] == list(range(1, len(events) + 1))


async def test_a_retryable_failure_is_tried_again_after_a_backoff_and_the_run_succeeds(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker() as running:
        request = await client.submit("flaky", {"failures": 1}, retry_backoff_s=0.05)
        terminal = await client.wait_terminal(request.run_id, timeout=120)
        retried = running.metrics.run_retries.labels("other")._value.get()
    assert isinstance(terminal, RunSucceeded), terminal
    assert (terminal.attempt, terminal.payload.result) == (2, {"attempt": 2})
    first, second = _of(client, request.run_id, 1), _of(client, request.run_id, 2)
    assert [event.type for event in first] == ["run.started", "run.log", "run.retrying"]
    assert [event.type for event in second] == ["run.started", "run.succeeded"]
    assert _seqs_gapless(first) and _seqs_gapless(second)
    line = first[1]
    assert isinstance(line, RunLog) and line.payload.level == "warning"
    assert line.payload.message.startswith(f"{RETRY_LOG} of 3 in 0.0")  # 0.025-0.05 s
    [notice] = _retrying(client, request.run_id)
    assert (notice.error_type, notice.next_attempt, notice.max_attempts) == ("FlakyError", 2, 3)
    assert notice.message == "attempt 1 met a flaky service"
    assert "actions.py" in (notice.traceback or "")
    assert 0.025 <= notice.delay_s <= 0.05  # equal jitter: half to all of the backoff
    assert retried == 1


async def test_a_run_failing_retryably_every_time_fails_after_max_attempts(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(max_attempts=5):
        request = await client.submit(
            "flaky", {"failures": 100}, max_attempts=3, retry_backoff_s=0.02
        )
        terminal = await client.wait_terminal(request.run_id, timeout=120)
    assert isinstance(terminal, RunFailed), terminal
    assert (terminal.attempt, terminal.payload.error_type) == (3, "FlakyError")
    assert terminal.payload.message == (
        "attempt 3 met a flaky service (tried 3 times; the request's max_attempts allows 3)"
    )
    assert terminal.payload.retryable  # a later rerun may still succeed
    notices = _retrying(client, request.run_id)
    assert [notice.next_attempt for notice in notices] == [2, 3]
    # Exponential: the second wait is drawn from twice the first one's range.
    assert 0.01 <= notices[0].delay_s <= 0.02 and 0.02 <= notices[1].delay_s <= 0.04
    started = [
        event.attempt for event in client.events[request.run_id] if event.type == "run.started"
    ]
    assert started == [1, 2, 3]


async def test_a_failure_that_is_not_retryable_fails_the_run_at_once(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(max_attempts=3, retry_backoff_s=0.01):
        request = await client.submit("fail", {"message": "disk on fire"})
        terminal = await client.wait_terminal(request.run_id, timeout=120)
    assert isinstance(terminal, RunFailed), terminal
    assert (terminal.attempt, terminal.payload.message) == (1, "disk on fire")
    assert not terminal.payload.retryable
    assert _retrying(client, request.run_id) == []


async def test_the_platform_caps_every_backoff(client: RunClient, worker: WorkerFactory) -> None:
    async with worker(retry_backoff_max_s=0.05):
        request = await client.submit("flaky", {"failures": 1}, retry_backoff_s=3600)
        terminal = await client.wait_terminal(request.run_id, timeout=120)
    assert isinstance(terminal, RunSucceeded), terminal
    [notice] = _retrying(client, request.run_id)
    assert 0.025 <= notice.delay_s <= 0.05  # RUNMESH_RETRY_BACKOFF_MAX_S, not the request's


async def test_a_cancel_during_the_backoff_ends_the_run_cancelled_at_once(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(retry_backoff_max_s=1000):
        # The action's own backoff (config.yaml: 120 s) applies: its first wait is 60-120 s.
        request = await client.submit("flaky_patient", {"failures": 100})
        await client.wait_event(request.run_id, "run.retrying", timeout=120)
        [notice] = _retrying(client, request.run_id)
        assert notice.delay_s >= 60
        await client.cancel(request.run_id)
        terminal = await client.wait_terminal(request.run_id, timeout=30)
        after = await client.submit("noop")  # the run's slot is free again
        assert (await client.wait_terminal(after.run_id, timeout=120)).type == "run.succeeded"
    assert (terminal.type, terminal.attempt) == ("run.cancelled", 1)
    events = client.events[request.run_id]
    assert [event.type for event in events][-2:] == ["run.retrying", "run.cancelled"]
    assert _seqs_gapless(events)  # all of attempt 1: no attempt 2 ever started
    assert {event.attempt for event in events} == {1}


async def test_a_worker_stopping_during_the_backoff_leaves_the_run_to_the_next_one(
    client: RunClient, worker: WorkerFactory
) -> None:
    request = await client.submit("flaky", {"failures": 1}, retry_backoff_s=120)
    async with worker(retry_backoff_max_s=1000):
        await client.wait_event(request.run_id, "run.retrying", timeout=120)
        began = time.monotonic()
    # It did not wait out the backoff, nor the 10 s shutdown grace of a running action.
    stopping_took = time.monotonic() - began
    assert client.terminal(request.run_id) == []
    async with worker():  # the request is delivered again: attempt 2 starts without waiting
        terminal = await client.wait_terminal(request.run_id, timeout=120)
    assert stopping_took < 5.0, f"stopping took {stopping_took:.1f}s"
    assert isinstance(terminal, RunSucceeded), terminal
    assert (terminal.attempt, terminal.payload.result) == (2, {"attempt": 2})


async def test_the_gateway_shows_the_retried_attempt_and_why(
    gateway: GatewayHandle, worker: WorkerFactory
) -> None:
    async with api(gateway, f"tenant-{uuid.uuid4().hex[:8]}") as http, worker():
        await wait_for_plugins(http, timeout=120)
        run = await submit(http, "flaky", {"failures": 1}, retry_backoff_s=0.05)
        done = await wait_state(http, run["id"], "succeeded", "failed", timeout=120)
        logs = (await http.get(f"/v1/runs/{run['id']}/logs")).json()["items"]
    assert done["state"] == "succeeded", done
    assert (done["attempt"], done["retry_reason"]) == (2, "retryable failure")
    assert done["error"] is None and done["result"] == {"attempt": 2}
    warnings = [item["message"] for item in logs if item["level"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(RETRY_LOG), warnings
    stored = await gateway.app.state.deps.pool.fetchval(
        "SELECT retry_backoff_s FROM runs.runs WHERE id = $1", uuid.UUID(run["id"])
    )
    assert stored == 0.05  # kept for a rerun
