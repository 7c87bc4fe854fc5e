"""A step of the to_task pipeline: `runmesh.pipeline.Step` over `ToTaskContext`."""

from __future__ import annotations

from typing import TypeAlias

from runmesh.pipeline import Step as PipelineStep
from runmesh.to_task.context import ToTaskContext

Step: TypeAlias = PipelineStep[ToTaskContext]
"""One step of the to_task pipeline (the Synapse `BaseStep`): subclass it."""
