-- One row per run a worker claimed: how many attempts started, and how the run ended.
-- Redelivered requests read it to number the attempt, stop runaway redelivery
-- (RUNMESH_MAX_ATTEMPTS) and skip runs that already ended, re-publishing their
-- terminal event so a reader that missed it still sees the run finish.
CREATE TABLE IF NOT EXISTS worker.run_attempts (
    run_id uuid PRIMARY KEY,
    category text NOT NULL,
    attempts integer NOT NULL,
    state text CHECK (state IN ('succeeded', 'failed', 'cancelled')),
    terminal_event bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
