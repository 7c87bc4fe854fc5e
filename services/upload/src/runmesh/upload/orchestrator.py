"""The upload pipeline's orchestrator: steps in order, real rollback, resources closed."""

from __future__ import annotations

from collections.abc import Sequence

from runmesh.pipeline import Orchestrator as PipelineOrchestrator
from runmesh.pipeline.resources import close_run_resources
from runmesh.upload.context import UploadContext
from runmesh.upload.steps.base import Step


class Orchestrator(PipelineOrchestrator[UploadContext]):
    """`steps` in order, compensated in reverse order on failure (objects and units deleted).

    A worker that dies or shuts down mid-run rolls back nothing: the next attempt resumes
    (objects already there are kept, units upserted).
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        super().__init__(steps, close=close_resources)


async def close_resources(ctx: UploadContext) -> None:
    """Close the storages and the pool the steps opened."""
    await close_run_resources((ctx.source, ctx.destination), ctx.pool)
