-- A run's own limit on starts (issue 17): the submission's `max_attempts`, kept so a rerun
-- asks for the same. Null: the worker's RUNMESH_MAX_ATTEMPTS (or the action's default).
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS max_attempts integer
    CHECK (max_attempts IS NULL OR max_attempts >= 1);
