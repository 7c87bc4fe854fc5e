"""Pipelines of steps with real rollback (the Synapse `BaseStep` + orchestrator, DESIGN §6).

A service's action opens the run's resources (`resources.py`), builds a context object from
them, lists its steps and hands both to `Orchestrator` (`PipelineAction` does all three): steps
run in order; when one fails or the run is cancelled, the steps that ran (the failing one
included, as it may have written part of its work) are rolled back in reverse order. A worker
shutdown that will retry the run rolls back nothing: the next attempt resumes.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Tracer

from runmesh.plugins import Run

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counts:
    """`stand_by`, `success`, `failed` of one metrics category (Synapse's MetricsRecord)."""

    stand_by: int = 0
    success: int = 0
    failed: int = 0

    def as_metrics(self) -> dict[str, float]:
        """The values `run.set_metrics` takes."""
        return {"stand_by": self.stand_by, "success": self.success, "failed": self.failed}


class PipelineContext(Protocol):
    """What the orchestrator needs of a context: the run it reports to."""

    @property
    def run(self) -> Run:
        """The run of the action that owns the pipeline."""
        ...


C = TypeVar("C", bound=PipelineContext)


class Step(ABC, Generic[C]):
    """One step: `execute` does its part, `rollback` undoes what it wrote outside the context."""

    name: ClassVar[str] = ""

    @abstractmethod
    async def execute(self, ctx: C) -> None:
        """Do this step's work, reading and filling `ctx`."""

    async def rollback(self, ctx: C) -> None:
        """Undo what `execute` wrote outside `ctx` (objects, rows); nothing by default."""


class Orchestrator(Generic[C]):
    """Runs `steps` in order and compensates in reverse order on failure.

    Unlike the Synapse SDK's rollbacks, which only clear in-memory lists, steps delete what the
    run wrote. No step opens or closes what the run works with: that was opened before the
    first step and is closed after the last (`open_run_resources`).
    """

    def __init__(
        self,
        steps: Sequence[Step[C]],
        *,
        tracer: Tracer | None = None,
    ) -> None:
        self.steps = list(steps)
        self._tracer = tracer

    async def run(self, ctx: C) -> None:
        """Execute every step, each in a span of its own (a child of the run's); on any
        exception roll back and re-raise it."""
        tracer = self._tracer or trace.get_tracer("runmesh.pipeline")
        done: list[Step[C]] = []
        try:
            for step in self.steps:
                with tracer.start_as_current_span(
                    f"step {step.name}", attributes={"runmesh.step": step.name}
                ):
                    await step.execute(ctx)
                done.append(step)
        except BaseException as failure:
            current = self.steps[len(done)]
            if ctx.run.will_be_retried:
                ctx.run.log_message(
                    f"stopped in step {current.name} by a worker shutdown; keeping what was "
                    "written for the next attempt",
                    level="warning",
                )
                raise
            ctx.run.log_message(
                f"step {current.name} failed ({failure}); rolling back", level="error"
            )
            for step in reversed([*done, current]):
                try:
                    with tracer.start_as_current_span(
                        f"rollback {step.name}", attributes={"runmesh.step": step.name}
                    ):
                        await step.rollback(ctx)
                except Exception:  # one failed compensation must not stop the others
                    log.exception("rollback of step %s failed", step.name)
                    ctx.run.log_message(f"rollback of step {step.name} failed", level="error")
            raise
