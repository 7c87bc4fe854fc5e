"""Pipelines (docs/pipelines.md): a run whose steps are child runs, moved forward from the
rows of `runs.pipelines` and `runs.pipeline_steps` each time a step's run ends.

`store` holds the SQL of those tables, `start` checks a definition and starts it, `forward`
decides which steps to submit, skip or end, in the transaction that saw a step end.
"""
