"""A step of the upload pipeline: `runmesh.pipeline.Step` over `UploadContext`."""

from __future__ import annotations

from runmesh.pipeline import Step as PipelineStep
from runmesh.upload.context import UploadContext


class Step(PipelineStep[UploadContext]):
    """One step of the upload pipeline (the Synapse `BaseStep`)."""
