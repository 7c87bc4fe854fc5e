"""What every statement on the run rows shares: its timeout, the run's columns, the notice."""

from __future__ import annotations

from typing import Final, TypeAlias

import asyncpg

DB_TIMEOUT_S: Final = 10.0
"""The longest any statement of the gateway on its pool, or acquiring a connection, may take."""

RUN_COLUMNS: Final = (
    "id, tenant, category, plugin, plugin_version, action, state, attempt, retry_reason, params,"
    " params_redacted, progress, metrics, result, error, timeout_s, max_attempts,"
    " retry_backoff_s, placement, pool, priority, resources, parent_run_id, idempotency_key,"
    " submitted_via, cancel_requested_at, created_at, started_at, finished_at, updated_at"
)
"""The columns of a run the API shows (`run_view`)."""

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
"""A connection (inside a caller's transaction) or the pool (one statement on its own)."""

# NOTIFY inside a transaction is delivered on commit, so a listener never hears of a row it
# cannot read yet. One statement sends a notice per element of its text array.
NOTIFY_EACH = "SELECT count(pg_notify($1, n)) FROM unnest($2::text[]) AS n"
