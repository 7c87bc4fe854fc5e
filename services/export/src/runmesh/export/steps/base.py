"""A step of the export pipeline: `runmesh.common.pipeline.Step` over `ExportContext`."""

from __future__ import annotations

from runmesh.common.pipeline import Step as PipelineStep
from runmesh.export.context import ExportContext


class Step(PipelineStep[ExportContext]):
    """One step of the export pipeline (the Synapse `BaseStep`)."""
