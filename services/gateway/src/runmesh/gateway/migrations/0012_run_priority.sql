-- Priorities and fair shares (issue 17, docs/operations.md "Priorities and fair shares").
-- A run's priority (1 lowest .. 9 highest), and the deployment (topic prefix) whose gateway
-- stored it: the gateway admits runs onto a pool while its runs started or on their way stay
-- under the pool's window, and counts only its own deployment's runs and workers when several
-- share one database. Rows stored before this have no deployment (''): the first gateway to
-- start adopts the unfinished ones.
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 5
    CHECK (priority BETWEEN 1 AND 9);
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS deployment text NOT NULL DEFAULT '';
-- What it asked of its worker ({lock_all}, null = nothing), kept for a rerun.
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS resources jsonb;
ALTER TABLE runs.workers ADD COLUMN IF NOT EXISTS deployment text NOT NULL DEFAULT '';

-- A pool's runs under way (started or on their way to a worker), counted at each admission.
CREATE INDEX IF NOT EXISTS runs_under_way ON runs.runs (deployment, category, pool)
    WHERE state IN ('queued', 'running');
-- A tenant's share counts its runs started within the last minute.
CREATE INDEX IF NOT EXISTS runs_recent_starts ON runs.runs (deployment, started_at);
-- The held runs the dispatcher orders by priority and fair share.
DROP INDEX IF EXISTS runs.runs_held;
CREATE INDEX IF NOT EXISTS runs_held ON runs.runs (deployment, category, created_at, id)
    WHERE state = 'queued' AND pool IS NULL AND submitted_via <> 'kafka';
CREATE INDEX IF NOT EXISTS workers_deployment ON runs.workers (deployment, category);
