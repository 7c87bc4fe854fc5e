-- Pools and labels (issue 17, docs/operations.md "Pools and labels"). A run's `placement`
-- ({pools, labels}, null = none) and the pool its request went to (null: none yet while the
-- run is held, or a run produced straight to Kafka). A held run's request waits in the
-- outbox with `held` set until the placement dispatcher releases it onto its pool's topic.
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS placement jsonb;
ALTER TABLE runs.runs ADD COLUMN IF NOT EXISTS pool text;
CREATE INDEX IF NOT EXISTS runs_held ON runs.runs (created_at, id)
    WHERE state = 'queued' AND placement IS NOT NULL AND pool IS NULL;

ALTER TABLE runs.outbox ADD COLUMN IF NOT EXISTS held boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS outbox_ready ON runs.outbox (id) WHERE sent_at IS NULL AND NOT held;
DROP INDEX IF EXISTS runs.outbox_unsent;
