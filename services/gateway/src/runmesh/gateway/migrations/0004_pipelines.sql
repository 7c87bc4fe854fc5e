-- Pipelines (issue 16): a pipeline is a run of category 'pipeline' whose steps are child
-- runs. Which step runs next is decided from these rows, in the transaction that stores a
-- step's terminal state, so a gateway killed at any moment loses nothing and submits no step
-- twice (a step's run id is fixed when the pipeline starts: a second insert does nothing).
-- A resumed pipeline is a new pipeline run whose succeeded steps keep the earlier run ids.
CREATE TABLE IF NOT EXISTS runs.pipelines (
    run_id uuid PRIMARY KEY REFERENCES runs.runs (id) ON DELETE CASCADE,
    spec jsonb NOT NULL,
    params jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS runs.pipeline_steps (
    pipeline_run_id uuid NOT NULL REFERENCES runs.pipelines (run_id) ON DELETE CASCADE,
    step text NOT NULL,
    position integer NOT NULL,
    run_id uuid NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (
        state IN ('pending', 'submitted', 'succeeded', 'failed', 'cancelled', 'skipped')
    ),
    error text,
    PRIMARY KEY (pipeline_run_id, step)
);

CREATE INDEX IF NOT EXISTS pipeline_steps_run_id ON runs.pipeline_steps (run_id);
