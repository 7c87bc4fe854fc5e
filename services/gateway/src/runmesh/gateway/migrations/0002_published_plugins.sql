-- Plugin versions published by a tenant through POST /v1/plugins (DESIGN §6): the archive
-- workers install ({uri, sha256, size}), and when a version was withdrawn (no new runs).
ALTER TABLE runs.plugins ADD COLUMN IF NOT EXISTS archive jsonb;
ALTER TABLE runs.plugins ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
