"""A step of the upload pipeline: `runmesh.common.pipeline.Step` over `UploadContext`."""

from __future__ import annotations

from runmesh.common.pipeline import Step as PipelineStep
from runmesh.upload.context import UploadContext


class Step(PipelineStep[UploadContext]):
    """One step of the upload pipeline (the Synapse `BaseStep`)."""
