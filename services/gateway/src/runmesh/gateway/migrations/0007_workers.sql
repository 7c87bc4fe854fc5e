-- Worker presence (issue 17, docs/operations.md "Workers and queues"): the latest
-- announcement of each worker and category on `runmesh.workers`, kept by the gateway's
-- presence loop. A queued run's reason and GET /v1/workers read it; a worker is live while
-- its announcement is younger than three heartbeats and not `stopped`.
CREATE TABLE IF NOT EXISTS runs.workers (
    worker text NOT NULL,
    category text NOT NULL,
    service text NOT NULL,
    pool text NOT NULL,
    labels text[] NOT NULL DEFAULT '{}',
    slots integer NOT NULL CHECK (slots >= 0),
    busy integer NOT NULL CHECK (busy >= 0),
    state text NOT NULL CHECK (state IN ('serving', 'stopping', 'stopped')),
    heartbeat_s double precision NOT NULL CHECK (heartbeat_s > 0),
    started_at timestamptz NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (worker, category)
);
CREATE INDEX IF NOT EXISTS workers_category ON runs.workers (category);

-- A queued run's position in its category's queue counts the queued runs before it.
CREATE INDEX IF NOT EXISTS runs_queued ON runs.runs (category, created_at, id)
    WHERE state = 'queued';
