"""Runs the steps in order; when one fails (or the run is cancelled), rolls back the others."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from runmesh.upload.context import UploadContext
from runmesh.upload.steps.base import Step

log = logging.getLogger(__name__)


class Orchestrator:
    """The pipeline: `steps` in order, compensated in reverse order on failure.

    Unlike the Synapse SDK's rollbacks, which only clear in-memory lists, these delete what the
    run wrote: its objects and its data units. A worker that dies or shuts down mid-run rolls
    back nothing: the next attempt resumes (objects already there are kept, units upserted).
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    async def run(self, ctx: UploadContext) -> None:
        """Execute every step; on any exception roll back and re-raise it."""
        done: list[Step] = []
        try:
            for step in self.steps:
                await step.execute(ctx)
                done.append(step)
        except BaseException as failure:
            current = self.steps[len(done)]
            if ctx.run.will_be_retried:
                # A worker shutdown: the next attempt resumes from what this one wrote.
                ctx.run.log_message(
                    f"stopped in step {current.name} by a worker shutdown; keeping what was "
                    "written for the next attempt",
                    level="warning",
                )
                raise
            ctx.run.log_message(
                f"step {current.name} failed ({failure}); rolling back", level="error"
            )
            # The failing step may have written part of its work: it rolls back too.
            for step in reversed([*done, current]):
                try:
                    await step.rollback(ctx)
                except Exception:  # one failed compensation must not stop the others
                    log.exception("rollback of step %s failed", step.name)
                    ctx.run.log_message(f"rollback of step {step.name} failed", level="error")
            raise
        finally:
            await close_resources(ctx)


async def close_resources(ctx: UploadContext) -> None:
    """Close the storages and the pool the steps opened."""
    for storage in (ctx.source, ctx.destination):
        if storage is not None:
            with contextlib.suppress(Exception):
                await storage.close()
    if ctx.pool is not None:
        await ctx.pool.close()
