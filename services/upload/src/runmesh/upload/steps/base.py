"""A step of the upload pipeline: `runmesh.pipeline.Step` over `UploadContext`."""

from __future__ import annotations

from typing import TypeAlias

from runmesh.pipeline import Step as PipelineStep
from runmesh.upload.context import UploadContext

Step: TypeAlias = PipelineStep[UploadContext]
"""One step of the upload pipeline (the Synapse `BaseStep`): subclass it."""
