-- Tenant limits (issue 17 item 4, docs/operations.md "Tenant limits"), set by an operator
-- with `runmesh limits set`: runs of a tenant under way at once and queued, over all its
-- categories ('*') or per category. A run over `max_running` waits held (its request kept in
-- the outbox) until one of the tenant's runs ends; a submission over `max_queued` is a 429.
CREATE TABLE IF NOT EXISTS runs.tenant_limits (
    tenant text NOT NULL,
    category text NOT NULL DEFAULT '*',
    max_running integer CHECK (max_running IS NULL OR max_running >= 1),
    max_queued integer CHECK (max_queued IS NULL OR max_queued >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, category)
);

-- A tenant's runs under way and queued are counted per submission when it has limits.
CREATE INDEX IF NOT EXISTS runs_tenant_unfinished ON runs.runs (tenant, category)
    WHERE state IN ('queued', 'running');

-- Held runs are now also those a tenant limit holds back (no placement): the dispatcher's
-- scan covers every queued run on no pool.
DROP INDEX IF EXISTS runs.runs_held;
CREATE INDEX IF NOT EXISTS runs_unplaced ON runs.runs (created_at, id)
    WHERE state = 'queued' AND pool IS NULL;
