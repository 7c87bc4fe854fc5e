"""A step of the export pipeline: `runmesh.pipeline.Step` over `ExportContext`."""

from __future__ import annotations

from runmesh.export.context import ExportContext
from runmesh.pipeline import Step as PipelineStep


class Step(PipelineStep[ExportContext]):
    """One step of the export pipeline (the Synapse `BaseStep`)."""
