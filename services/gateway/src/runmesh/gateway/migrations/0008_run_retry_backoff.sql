-- A run's own first retry backoff (issue 17 item 6): the submission's `retry_backoff_s`, kept
-- so a rerun asks for the same. Null: the action's default, else RUNMESH_RETRY_BACKOFF_S.
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS retry_backoff_s double precision
    CHECK (retry_backoff_s IS NULL OR retry_backoff_s >= 0);
