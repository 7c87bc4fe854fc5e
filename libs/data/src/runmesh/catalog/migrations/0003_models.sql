-- Trained models (DESIGN §7) and which run annotated a task.

-- The run that last wrote a task's annotations (a to_task run's pre-annotations); null when
-- they came through the API (`PUT /v1/tasks/{id}/data`), so "what did run X pre-annotate"
-- is one indexed query.
ALTER TABLE catalog.tasks ADD COLUMN IF NOT EXISTS annotated_by_run_id uuid;
CREATE INDEX IF NOT EXISTS tasks_annotated_by_run
    ON catalog.tasks (annotated_by_run_id, id) WHERE annotated_by_run_id IS NOT NULL;

-- One model per train or tune run: an attempt that registers again (a retried run) updates
-- its own row instead of adding one. `artifact_uri` is where the weights are (s3://, file://);
-- `classes` are the output classes in order; `dataset` says what it was trained on.
CREATE TABLE IF NOT EXISTS catalog.models (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    plugin text NOT NULL,
    plugin_version text NOT NULL,
    action text NOT NULL,
    run_id uuid NOT NULL,
    base_model_id uuid REFERENCES catalog.models (id),
    dataset jsonb NOT NULL,
    classes jsonb NOT NULL,
    params jsonb NOT NULL,
    metrics jsonb NOT NULL,
    artifact_uri text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name),
    UNIQUE (tenant, run_id)
);
CREATE INDEX IF NOT EXISTS models_tenant_created
    ON catalog.models (tenant, created_at DESC, id DESC);
