"""`PipelineAction`: an action whose `start()` is resources, then steps, then closing."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from runmesh.pipeline.orchestrator import C, Orchestrator, Step
from runmesh.pipeline.resources import RunResources, open_run_resources, platform_settings
from runmesh.plugins import Action

P = TypeVar("P", bound=BaseModel)


class PipelineAction(Action[P], Generic[P, C]):
    """A service action that runs a pipeline of steps over a context (`C`) for params `P`.

    `start()` opens the run's resources (its catalog pool, then what `open_context` adds),
    builds the context from them, runs `steps()` through the `Orchestrator`, closes the
    resources and returns `result(ctx)`. A resource that fails to open fails the run before any
    step ran, so there is nothing to roll back; no step opens or closes one. `on_failure` hears
    of what failed the run once the resources are closed.
    """

    @abstractmethod
    def steps(self) -> Sequence[Step[C]]:
        """The pipeline, in order."""

    @abstractmethod
    async def open_context(self, resources: RunResources) -> C:
        """Open what the steps use beyond the pool (each registered on `resources`, so that it
        is closed) and return the context the first step gets."""

    @abstractmethod
    def result(self, ctx: C) -> dict[str, object]:
        """The run's result, from the context the last step left."""

    def on_failure(self, exc: Exception) -> None:
        """Called with what failed opening a resource or in a step, before it fails the run
        (default: nothing). Not called for a run without platform settings."""

    async def start(self) -> dict[str, object]:
        """Open the resources, run the pipeline, close the resources; the result."""
        settings = platform_settings(self.run, self.name)
        try:
            async with open_run_resources(self.run, settings) as resources:
                ctx = await self.open_context(resources)
                await Orchestrator(self.steps()).run(ctx)
        except Exception as exc:
            self.on_failure(exc)
            raise
        return self.result(ctx)
