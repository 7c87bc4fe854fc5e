"""The step pipeline a service action runs: steps with rollback, what a run opens, child runs.

`orchestrator` runs steps in order and rolls them back; `resources` opens and closes what a
run's pipeline uses (pool, storages); `child_runs` starts another category's run and waits.
"""

from runmesh.pipeline.orchestrator import Counts, Orchestrator, PipelineContext, Step

__all__ = ["Counts", "Orchestrator", "PipelineContext", "Step"]
