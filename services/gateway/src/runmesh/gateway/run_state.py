"""The run state machine (DESIGN §4): a run's new state from its newly stored events, no I/O."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runmesh.core.events import (
    TERMINAL_STATES,
    JsonObject,
    RunCancelled,
    RunEvent,
    RunFailed,
    RunMetric,
    RunProgress,
    RunRetrying,
    RunStarted,
    RunSucceeded,
)

# Progress entries are JSON objects: {current, total, percent, first_at, first_current,
# updated_at}; timestamps are ISO 8601 strings with their offset.
ProgressEntry = dict[str, Any]

WORKER_LOST = "worker lost"
"""`retry_reason` of an attempt that started while the attempt before it had not ended."""
RETRYABLE_FAILURE = "retryable failure"
"""`retry_reason` of an attempt that started after the one before it ended in `run.retrying`."""


@dataclass(slots=True, frozen=True)
class RunSnapshot:
    """The event-derived columns of a `runs.runs` row.

    `attempt` is the latest attempt seen (0 = none yet); `progress` and `metrics` belong to that
    attempt only; `retry_reason` says why that attempt started, when it is not the first.
    `error` of a run that is not terminal is the failure of an attempt that ended in
    `run.retrying`: the run waits for its next attempt. Instances are never mutated:
    `apply_events` returns a new one.
    """

    state: str = "queued"
    attempt: int = 0
    retry_reason: str | None = None
    plugin: str | None = None  # the plugin code that ran, from run.started
    action: str | None = None  # from run.started
    plugin_version: str | None = None
    parent_run_id: uuid.UUID | None = None  # a child run's parent, from run.started
    params_redacted: JsonObject = field(default_factory=dict)
    progress: dict[str, ProgressEntry] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    result: JsonObject | None = None
    error: JsonObject | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the run ended (succeeded, failed or cancelled): nothing changes it again."""
        return self.state in TERMINAL_STATES


def progress_percent(current: float, total: float | None) -> float | None:
    """`current` of `total` as 0-100, rounded to 2 decimals; None when the total is unknown/0."""
    if not total:
        return None
    return round(min(max(current / total * 100.0, 0.0), 100.0), 2)


def apply_events(snapshot: RunSnapshot, events: Iterable[RunEvent]) -> RunSnapshot:
    """Apply one run's newly stored events, in stream order, to its current state.

    The caller passes each event once (the aggregator passes only rows its insert created), so
    re-delivery after a crash changes nothing. Rules:

    - a terminal state is final: later events of any attempt are stored but change nothing
      (this also keeps a run the gateway itself cancelled cancelled);
    - an event of an attempt older than the current one is stale and ignored (a zombie worker);
    - an event of a newer attempt makes it current: progress, metrics, result and error start
      over, the state becomes running (or the terminal state the event carries); when it is
      not attempt 1, `retry_reason` becomes "retryable failure" if the attempt before it
      ended in `run.retrying`, else "worker lost" (the other way a worker starts attempt
      N > 1 is a request delivered again while its run had not ended, and a run that ended
      changes no more, so the attempt before it never ended);
    - run.retrying keeps the run running and sets error to the attempt's failure;
    - run.started sets started_at (of the latest attempt), plugin, action, plugin_version and
      params_redacted; run.progress and run.metric update their category; the terminal events
      set result or error and finished_at.
    """
    state = snapshot.state
    attempt = snapshot.attempt
    progress = snapshot.progress
    metrics = snapshot.metrics
    changes: dict[str, Any] = {}
    copied_progress = copied_metrics = False
    for event in events:
        if state in TERMINAL_STATES:
            break
        if event.attempt < attempt:
            continue
        if event.attempt > attempt:
            # A running run has an error only while it waits to retry (run.retrying).
            after_retry = changes.get("error", snapshot.error) is not None
            attempt = event.attempt
            progress, metrics = {}, {}
            copied_progress = copied_metrics = True
            changes.update(result=None, error=None)
            reason = RETRYABLE_FAILURE if after_retry else WORKER_LOST
            changes["retry_reason"] = reason if attempt > 1 else None
        # Any event of the current attempt shows the run executing, even if its run.started
        # was never seen (a runtime failure before the action started has none).
        state = "running"
        if isinstance(event, RunStarted):
            payload = event.payload
            changes.update(
                started_at=event.ts,
                plugin=payload.plugin,
                action=payload.action,
                plugin_version=payload.plugin_version,
                params_redacted=dict(payload.params),
            )
            if payload.parent_run_id is not None:
                changes["parent_run_id"] = payload.parent_run_id
        elif isinstance(event, RunProgress):
            if not copied_progress:
                progress, copied_progress = dict(progress), True
            progress[event.payload.category] = _progress_entry(
                progress.get(event.payload.category), event
            )
        elif isinstance(event, RunMetric):
            if not copied_metrics:
                metrics, copied_metrics = dict(metrics), True
            category = event.payload.category
            metrics[category] = {**metrics.get(category, {}), **event.payload.values}
        elif isinstance(event, RunSucceeded):
            state = "succeeded"
            changes.update(result=dict(event.payload.result), error=None, finished_at=event.ts)
        elif isinstance(event, RunFailed):
            state = "failed"
            failure = event.payload
            changes.update(
                result=None,
                error={
                    "type": failure.error_type,
                    "message": failure.message,
                    "traceback": failure.traceback,
                    "retryable": failure.retryable,
                },
                finished_at=event.ts,
            )
        elif isinstance(event, RunRetrying):
            retrying = event.payload
            changes["error"] = {
                "type": retrying.error_type,
                "message": retrying.message,
                "traceback": retrying.traceback,
                "retryable": True,
            }
        elif isinstance(event, RunCancelled):
            state = "cancelled"
            changes.update(result=None, error=None, finished_at=event.ts)
    if copied_progress:
        changes["progress"] = progress
    if copied_metrics:
        changes["metrics"] = metrics
    return dataclasses.replace(snapshot, state=state, attempt=attempt, **changes)


def _progress_entry(previous: ProgressEntry | None, event: RunProgress) -> ProgressEntry:
    current = event.payload.current
    total = event.payload.total
    at = event.ts.isoformat()
    return {
        "current": current,
        "total": total,
        "percent": progress_percent(current, total),
        # Where this attempt's measurement began: the rate since then gives the ETA.
        "first_at": previous["first_at"] if previous else at,
        "first_current": previous["first_current"] if previous else current,
        "updated_at": at,
    }
