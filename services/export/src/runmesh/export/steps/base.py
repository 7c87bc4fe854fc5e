"""A step of the export pipeline: `runmesh.pipeline.Step` over `ExportContext`."""

from __future__ import annotations

from typing import TypeAlias

from runmesh.export.context import ExportContext
from runmesh.pipeline import Step as PipelineStep

Step: TypeAlias = PipelineStep[ExportContext]
"""One step of the export pipeline (the Synapse `BaseStep`): subclass it."""
