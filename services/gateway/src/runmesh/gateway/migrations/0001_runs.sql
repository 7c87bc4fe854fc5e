-- Run state owned by the gateway (DESIGN §5, §7). Every row carries its tenant; every query
-- filters by it.

CREATE TABLE IF NOT EXISTS runs.runs (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    category text NOT NULL,
    plugin text,                      -- as requested: code, code@version, or null (built-in)
    plugin_version text,              -- what ran, from run.started
    action text NOT NULL,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt integer NOT NULL DEFAULT 0,   -- the latest attempt seen (0 = not started)
    params jsonb NOT NULL DEFAULT '{}',   -- as submitted; secrets included (rerun, outbox)
    params_redacted jsonb NOT NULL DEFAULT '{}',  -- what the API shows
    -- {category: {current, total, percent, first_at, first_current, updated_at}}
    progress jsonb NOT NULL DEFAULT '{}',
    metrics jsonb NOT NULL DEFAULT '{}',  -- {category: {name: value}} (latest)
    result jsonb,
    error jsonb,                          -- {type, message, traceback, retryable}
    timeout_s double precision,
    parent_run_id uuid,
    idempotency_key text,
    submitted_via text NOT NULL DEFAULT 'rest' CHECK (submitted_via IN ('rest', 'kafka')),
    cancel_requested_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_tenant_idempotency_key
    ON runs.runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_tenant_created ON runs.runs (tenant, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_cancel_pending
    ON runs.runs (cancel_requested_at) WHERE cancel_requested_at IS NOT NULL AND state = 'running';

-- Every event ever received, deduplicated by event_id. `id` orders one run's events across
-- attempts (a run's events share a partition, and one aggregator inserts a partition's
-- events in order); it is the SSE `id:` and the `Last-Event-ID` clients resume from.
CREATE TABLE IF NOT EXISTS runs.run_events (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    run_id uuid NOT NULL,
    tenant text NOT NULL,
    attempt integer NOT NULL,
    seq integer NOT NULL,
    type text NOT NULL,
    ts timestamptz NOT NULL,
    service text NOT NULL,
    worker text NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS run_events_run ON runs.run_events (run_id, id);
CREATE INDEX IF NOT EXISTS run_events_run_logs ON runs.run_events (run_id, id)
    WHERE type = 'run.log';

-- Transactional outbox: a REST submission inserts its run and its request here in one
-- transaction; the relay publishes and marks it sent (Kafka down delays runs, never loses).
CREATE TABLE IF NOT EXISTS runs.outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    key text,
    value bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '[]',  -- [[name, value], ...] (values as text)
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON runs.outbox (id) WHERE sent_at IS NULL;

CREATE TABLE IF NOT EXISTS runs.api_tokens (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL DEFAULT '',
    token_sha256 bytea NOT NULL UNIQUE,   -- tokens are shown once and stored hashed
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

-- Plugin manifests announced on runmesh.plugins (latest announcement per version).
CREATE TABLE IF NOT EXISTS runs.plugins (
    tenant text NOT NULL DEFAULT '*',     -- '*' = built-in or worker-local: every tenant
    code text NOT NULL,
    version text NOT NULL,
    category text NOT NULL,
    builtin boolean NOT NULL DEFAULT false,
    manifest jsonb NOT NULL,
    announced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, code, version)
);
