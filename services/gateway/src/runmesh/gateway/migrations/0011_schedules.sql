-- Schedules (issue 17 item 7, docs/gateway.md "Schedules"): a run or a pipeline submitted at
-- each tick of a cron expression in a time zone. Every gateway replica's schedule loop claims
-- due rows with FOR UPDATE SKIP LOCKED and moves `next_at` in the same transaction, so each
-- tick fires once however many replicas run; the submission's idempotency key
-- (`schedule-<id>-<tick>`) keeps a retried tick from submitting twice.
CREATE TABLE IF NOT EXISTS runs.schedules (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    cron text NOT NULL,
    timezone text NOT NULL,
    overlap text NOT NULL CHECK (overlap IN ('skip', 'queue', 'cancel_previous')),
    submission jsonb NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    next_at timestamptz NOT NULL,
    last_fired_at timestamptz,
    last_run_id uuid,
    fired integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX IF NOT EXISTS schedules_due ON runs.schedules (next_at) WHERE NOT paused;
