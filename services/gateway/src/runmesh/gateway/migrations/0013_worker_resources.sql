-- Resources (issue 17, docs/operations.md "Resources and exclusive runs"): what each worker
-- offers its runs, as it announces; a run asking for GPUs or memory goes only to a pool whose
-- live workers all offer as much. Announcements from before have none (0).
ALTER TABLE runs.workers ADD COLUMN IF NOT EXISTS gpus integer NOT NULL DEFAULT 0
    CHECK (gpus >= 0);
ALTER TABLE runs.workers ADD COLUMN IF NOT EXISTS memory_mb bigint NOT NULL DEFAULT 0
    CHECK (memory_mb >= 0);

-- The dispatcher releases held requests by their key (the run id) on every pass; sent rows
-- are kept, so without this each pass would scan the whole outbox.
CREATE INDEX IF NOT EXISTS outbox_held ON runs.outbox (key) WHERE held;
