"""The step pipeline a service action runs: steps with rollback, what a run opens, child runs.

`orchestrator` runs steps in order and rolls them back; `resources` opens, before the first
step, what a run's pipeline uses (pool, storages) and closes it after the last; `action` is the
`start()` that does both around the orchestrator; `child_runs` starts another category's run
and waits.
"""

from runmesh.pipeline.action import PipelineAction
from runmesh.pipeline.orchestrator import Counts, Orchestrator, PipelineContext, Step
from runmesh.pipeline.resources import RunResources, open_run_resources, platform_settings

__all__ = [
    "Counts",
    "Orchestrator",
    "PipelineAction",
    "PipelineContext",
    "RunResources",
    "Step",
    "open_run_resources",
    "platform_settings",
]
