"""Every statement on the run rows (`runs.runs`), and the REST reads of a run's stored events.

The routes, the cancel path, the outbox relay, the SSE hub and the aggregator call these
functions and hold no SQL on run rows of their own, so a column, a lock order or a notice is
written once, with one timeout (`DB_TIMEOUT_S`). Other tables stay with their one user: the
outbox relay's `runs.outbox`, the SSE hub's event reads (its `EventStore`) and the
aggregator's event insert (beside its batch).

By concern: `_reads` (a run, a list, logs, metrics, artifacts), `_submissions` (storing a
REST submission), `_cancels` (cancelling, and the notices of runs the gateway ends),
`_aggregation` (the aggregator's batch of run rows and its notices), `_pipelines` (a
pipeline's own run and its steps' outcomes) and `_queue` (where queued runs stand).
"""

from __future__ import annotations

from runmesh.gateway.runs_store._aggregation import (
    LockedRun,
    RunUpdate,
    insert_kafka_runs,
    lock_runs,
    update_runs,
)
from runmesh.gateway.runs_store._cancels import (
    cancelled_before_starting,
    end_overdue_cancels,
    end_queued_run,
    lock_run,
    notify_ended,
    request_cancel,
)
from runmesh.gateway.runs_store._pipelines import (
    PIPELINE_CATEGORY,
    StepOutcome,
    end_pipeline_run,
    insert_pipeline_run,
    lock_pipeline_run,
    set_pipeline_progress,
    step_outcomes,
)
from runmesh.gateway.runs_store._queue import (
    adopt_unscoped,
    held_categories,
    held_in_order,
    lock_held_runs,
    queue_positions,
    recent_run_seconds,
    set_pools,
    under_way,
)
from runmesh.gateway.runs_store._reads import (
    RunFilter,
    artifact_event,
    get_run,
    get_runs,
    has_terminal_event,
    list_runs,
    log_events,
    metric_events,
    run_exists,
    run_ids_between,
    run_state,
)
from runmesh.gateway.runs_store._sql import DB_TIMEOUT_S, RUN_COLUMNS, Db
from runmesh.gateway.runs_store._submissions import NewRun, find_submitted, insert_run

__all__ = [
    "DB_TIMEOUT_S",
    "PIPELINE_CATEGORY",
    "RUN_COLUMNS",
    "Db",
    "LockedRun",
    "NewRun",
    "RunFilter",
    "RunUpdate",
    "StepOutcome",
    "adopt_unscoped",
    "artifact_event",
    "cancelled_before_starting",
    "end_overdue_cancels",
    "end_pipeline_run",
    "end_queued_run",
    "find_submitted",
    "get_run",
    "get_runs",
    "has_terminal_event",
    "held_categories",
    "held_in_order",
    "insert_kafka_runs",
    "insert_pipeline_run",
    "insert_run",
    "list_runs",
    "lock_held_runs",
    "lock_pipeline_run",
    "lock_run",
    "lock_runs",
    "log_events",
    "metric_events",
    "notify_ended",
    "queue_positions",
    "recent_run_seconds",
    "request_cancel",
    "run_exists",
    "run_ids_between",
    "run_state",
    "set_pipeline_progress",
    "set_pools",
    "step_outcomes",
    "under_way",
    "update_runs",
]
