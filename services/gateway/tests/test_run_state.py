"""The run state machine: every rule of DESIGN §4 as the aggregator applies it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runmesh.core.events import (
    CancelledPayload,
    FailedPayload,
    LogPayload,
    MetricPayload,
    ProgressPayload,
    RetryingPayload,
    RunCancelled,
    RunEvent,
    RunFailed,
    RunLog,
    RunMetric,
    RunProgress,
    RunRetrying,
    RunStarted,
    RunSucceeded,
    StartedPayload,
    SucceededPayload,
)
from runmesh.gateway.run_state import (
    RETRYABLE_FAILURE,
    WORKER_LOST,
    RunSnapshot,
    apply_events,
    progress_percent,
)

RUN = uuid.uuid4()
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class Attempt:
    """Builds one attempt's events with gapless seqs and timestamps one second apart."""

    def __init__(self, attempt: int = 1, start: datetime = T0) -> None:
        self.attempt = attempt
        self.seq = 0
        self.start = start

    def _env(self) -> dict[str, Any]:
        self.seq += 1
        return {
            "run_id": RUN,
            "attempt": self.attempt,
            "seq": self.seq,
            "ts": self.start + timedelta(seconds=self.seq),
            "service": "test",
            "worker": "w1",
        }

    def started(self, params: dict[str, Any] | None = None, version: str = "1.0.0") -> RunStarted:
        payload = StartedPayload(
            plugin="kit", plugin_version=version, action="echo", params=params or {"n": 1}
        )
        return RunStarted(**self._env(), payload=payload)

    def progress(self, current: float, total: float | None, category: str = "c") -> RunProgress:
        payload = ProgressPayload(category=category, current=current, total=total)
        return RunProgress(**self._env(), payload=payload)

    def metric(self, values: dict[str, float], category: str = "m") -> RunMetric:
        return RunMetric(**self._env(), payload=MetricPayload(category=category, values=values))

    def log(self) -> RunLog:
        return RunLog(**self._env(), payload=LogPayload(message="hi"))

    def succeeded(self, result: dict[str, Any] | None = None) -> RunSucceeded:
        return RunSucceeded(**self._env(), payload=SucceededPayload(result=result or {"ok": 1}))

    def failed(self, error_type: str = "Boom", retryable: bool = False) -> RunFailed:
        payload = FailedPayload(
            error_type=error_type, message="it broke", traceback="tb", retryable=retryable
        )
        return RunFailed(**self._env(), payload=payload)

    def retrying(self, delay_s: float = 2.0) -> RunRetrying:
        payload = RetryingPayload(
            error_type="Flaky",
            message="try again",
            traceback="tb",
            next_attempt=self.attempt + 1,
            max_attempts=3,
            delay_s=delay_s,
        )
        return RunRetrying(**self._env(), payload=payload)

    def cancelled(self) -> RunCancelled:
        return RunCancelled(**self._env(), payload=CancelledPayload(reason="user"))

    def ts(self, seq: int) -> datetime:
        return self.start + timedelta(seconds=seq)


def run(*events: RunEvent, start: RunSnapshot | None = None) -> RunSnapshot:
    return apply_events(start or RunSnapshot(), events)


def test_a_new_run_is_queued_with_no_attempt() -> None:
    snapshot = RunSnapshot()
    assert (snapshot.state, snapshot.attempt, snapshot.terminal) == ("queued", 0, False)
    assert apply_events(snapshot, []) == snapshot


def test_started_sets_running_and_what_ran() -> None:
    a = Attempt()
    after = run(a.started({"name": "ada", "token": "***"}, version="2.1.0"))
    assert after.state == "running"
    assert after.attempt == 1
    assert after.started_at == a.ts(1)
    assert (after.plugin, after.action, after.plugin_version) == ("kit", "echo", "2.1.0")
    assert after.params_redacted == {"name": "ada", "token": "***"}
    assert after.finished_at is None and not after.terminal


def test_success_stores_result_and_finish_time() -> None:
    a = Attempt()
    after = run(a.started(), a.log(), a.succeeded({"rows": 3}))
    assert after.state == "succeeded" and after.terminal
    assert after.result == {"rows": 3}
    assert after.error is None
    assert after.finished_at == a.ts(3)


def test_failure_stores_the_error_object() -> None:
    a = Attempt()
    after = run(a.started(), a.failed("Timeout", retryable=True))
    assert after.state == "failed"
    assert after.error == {
        "type": "Timeout",
        "message": "it broke",
        "traceback": "tb",
        "retryable": True,
    }
    assert after.result is None
    assert after.finished_at == a.ts(2)


def test_failure_without_a_start_still_ends_the_run() -> None:
    a = Attempt()  # invalid params: the runtime fails the run before the action starts
    after = run(a.failed("ValidationError"))
    assert (after.state, after.attempt, after.started_at) == ("failed", 1, None)
    assert after.error is not None and after.error["type"] == "ValidationError"


def test_cancelled_has_no_error() -> None:
    a = Attempt()
    after = run(a.started(), a.progress(1, 10), a.cancelled())
    assert after.state == "cancelled"
    assert after.error is None and after.result is None
    assert after.finished_at == a.ts(3)


def test_progress_keeps_first_and_latest_point_per_category() -> None:
    a = Attempt()
    after = run(
        a.started(),
        a.progress(2, 10, "download"),
        a.progress(5, 10, "download"),
        a.progress(1, None, "convert"),
        a.progress(8, 10, "download"),
    )
    assert after.progress == {
        "download": {
            "current": 8,
            "total": 10,
            "percent": 80.0,
            "first_at": a.ts(2).isoformat(),
            "first_current": 2,
            "updated_at": a.ts(5).isoformat(),
        },
        "convert": {
            "current": 1,
            "total": None,
            "percent": None,
            "first_at": a.ts(4).isoformat(),
            "first_current": 1,
            "updated_at": a.ts(4).isoformat(),
        },
    }


@pytest.mark.parametrize(
    ("current", "total", "percent"),
    [
        (0, 10, 0.0),
        (1, 3, 33.33),
        (2, 3, 66.67),
        (10, 10, 100.0),
        (15, 10, 100.0),  # a plugin overshooting its total is clamped, not 150 %
        (5, 0, None),  # a zero total means "unknown", never a division by zero
        (5, None, None),
    ],
)
def test_percent_math(current: float, total: float | None, percent: float | None) -> None:
    assert progress_percent(current, total) == percent
    a = Attempt()
    assert run(a.progress(current, total)).progress["c"]["percent"] == percent


def test_metrics_merge_per_category_latest_wins() -> None:
    a = Attempt()
    after = run(
        a.started(),
        a.metric({"loss": 0.9, "acc": 0.1}, "train"),
        a.metric({"loss": 0.3}, "train"),
        a.metric({"map": 0.5}, "eval"),
    )
    assert after.metrics == {"train": {"loss": 0.3, "acc": 0.1}, "eval": {"map": 0.5}}


def test_events_before_start_show_the_run_running() -> None:
    a = Attempt()
    after = run(a.log())
    assert (after.state, after.attempt, after.started_at) == ("running", 1, None)


@pytest.mark.parametrize("terminal", ["succeeded", "failed", "cancelled"])
def test_terminal_state_is_final_for_every_later_event(terminal: str) -> None:
    a = Attempt()
    ended = run(a.started(), a.progress(5, 10), a.metric({"loss": 1.0}), getattr(a, terminal)())
    later = Attempt(attempt=2, start=T0 + timedelta(minutes=5))
    after = apply_events(
        ended,
        [
            a.progress(10, 10),
            a.metric({"loss": 0.0}),
            a.failed(),
            a.succeeded({"late": True}),
            later.started(),
            later.progress(1, 2),
            later.succeeded(),
        ],
    )
    assert after == ended


def test_terminal_event_within_a_batch_stops_the_rest_of_the_batch() -> None:
    a = Attempt()
    after = run(a.started(), a.succeeded({"r": 1}), a.progress(9, 10), a.metric({"x": 1}))
    assert after.state == "succeeded"
    assert after.progress == {} and after.metrics == {}
    assert after.result == {"r": 1}


def test_a_run_cancelled_by_the_gateway_stays_cancelled() -> None:
    cancelled = RunSnapshot(state="cancelled", attempt=1)
    a = Attempt()
    assert run(a.progress(3, 4), a.succeeded(), start=cancelled) == cancelled
    queued_cancel = RunSnapshot(state="cancelled")
    assert run(a.started(), start=queued_cancel) == queued_cancel


def test_a_new_attempt_resets_progress_metrics_and_start() -> None:
    first = Attempt(1)
    second = Attempt(2, start=T0 + timedelta(minutes=10))
    after = run(
        first.started(version="1.0.0"),
        first.progress(7, 10),
        first.metric({"loss": 0.5}),
        second.started(version="1.0.1"),
        second.progress(1, 10),
    )
    assert after.state == "running" and after.attempt == 2
    assert after.started_at == second.ts(1)
    assert after.plugin_version == "1.0.1"
    assert after.metrics == {}
    assert after.progress["c"]["current"] == 1
    assert after.progress["c"]["first_current"] == 1
    assert after.progress["c"]["first_at"] == second.ts(2).isoformat()


def test_events_of_an_older_attempt_are_stale() -> None:
    first = Attempt(1)
    second = Attempt(2, start=T0 + timedelta(minutes=10))
    running = run(first.started(), first.progress(1, 10), second.started(), second.progress(2, 10))
    # A zombie attempt-1 worker keeps reporting, and even ends its attempt.
    after = apply_events(
        running, [first.progress(9, 10), first.metric({"loss": 0.1}), first.succeeded()]
    )
    assert after == running
    done = apply_events(after, [second.succeeded({"attempt": 2})])
    assert done.state == "succeeded" and done.result == {"attempt": 2}


def test_max_attempts_failure_of_a_new_attempt_without_start() -> None:
    first = Attempt(1)
    fourth = Attempt(4, start=T0 + timedelta(minutes=30))
    after = run(first.started(), first.progress(1, 2), fourth.failed("MaxAttemptsExceeded"))
    assert (after.state, after.attempt) == ("failed", 4)
    assert after.progress == {}
    assert after.error is not None and after.error["type"] == "MaxAttemptsExceeded"
    # The start shown is the last attempt that started.
    assert after.started_at == first.ts(1)


def test_application_is_pure_and_split_batches_agree() -> None:
    a = Attempt()
    events: list[RunEvent] = [
        a.started(),
        a.progress(1, 4),
        a.metric({"loss": 0.9}),
        a.progress(2, 4),
        a.metric({"loss": 0.4}),
        a.progress(4, 4),
        a.succeeded(),
    ]
    before = RunSnapshot()
    whole = apply_events(before, events)
    assert before == RunSnapshot()  # the input snapshot is not mutated
    for cut in range(len(events) + 1):
        middle = apply_events(before, events[:cut])
        progress_before = {k: dict(v) for k, v in middle.progress.items()}
        assert apply_events(middle, events[cut:]) == whole
        assert middle.progress == progress_before  # nor is the intermediate one
    # Re-applying what was already applied (only possible without the event_id dedup) still
    # leaves a terminal run as it was; the aggregator never passes an event twice.
    assert apply_events(whole, events) == whole


def test_the_same_events_give_the_same_state() -> None:
    a = Attempt()
    events: list[RunEvent] = [a.started(), a.progress(3, 6), a.metric({"x": 2.0})]
    assert apply_events(RunSnapshot(), events) == apply_events(RunSnapshot(), list(events))


def test_a_retried_attempt_keeps_the_run_running_with_its_failure_until_the_next() -> None:
    first = Attempt(1)
    second = Attempt(2, start=T0 + timedelta(minutes=1))
    events: list[RunEvent] = [first.started(), first.progress(1, 2), first.retrying()]
    waiting = run(*events)
    assert (waiting.state, waiting.attempt, waiting.finished_at) == ("running", 1, None)
    assert waiting.error == {
        "type": "Flaky",
        "message": "try again",
        "traceback": "tb",
        "retryable": True,
    }
    # The next attempt may arrive in a later batch: the stored error says it was a retry.
    next_start = second.started()
    again = apply_events(waiting, [next_start])
    assert (again.state, again.attempt, again.retry_reason) == ("running", 2, RETRYABLE_FAILURE)
    assert again.error is None and again.progress == {}
    done = apply_events(again, [second.succeeded({"attempt": 2})])
    assert (done.state, done.retry_reason, done.error) == ("succeeded", RETRYABLE_FAILURE, None)
    assert run(*events, next_start) == again  # or in the same batch


def test_an_attempt_after_one_that_never_ended_was_a_lost_worker() -> None:
    first = Attempt(1)
    second = Attempt(2, start=T0 + timedelta(minutes=1))
    after = run(first.started(), first.progress(1, 2), second.started())
    assert (after.attempt, after.retry_reason) == (2, WORKER_LOST)


def test_a_cancel_during_the_backoff_ends_the_run_in_the_retried_attempt() -> None:
    a = Attempt()
    after = run(a.started(), a.retrying(), a.cancelled())
    assert (after.state, after.attempt, after.error) == ("cancelled", 1, None)
    assert after.finished_at == a.ts(3)
