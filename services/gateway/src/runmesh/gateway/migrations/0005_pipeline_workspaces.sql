-- Pipeline workspaces (issue 16): a folder of the platform bucket that every step of a
-- pipeline run reads and writes. A resumed pipeline keeps the workspace of the one it resumes,
-- so its steps find what the earlier steps wrote; the gateway deletes a workspace's files once
-- every pipeline run using it ended more than RUNMESH_PIPELINE_WORKSPACE_RETENTION_S ago.
ALTER TABLE runs.pipelines ADD COLUMN IF NOT EXISTS workspace text;
ALTER TABLE runs.pipelines ADD COLUMN IF NOT EXISTS workspace_cleaned_at timestamptz;

CREATE INDEX IF NOT EXISTS pipelines_workspace_uncleaned ON runs.pipelines (workspace)
    WHERE workspace_cleaned_at IS NULL;
