"""The generic pipeline: order, real rollback in reverse, no rollback on a retry, spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runmesh.pipeline import Orchestrator, Step


@dataclass
class FakeRun:
    """The two things the orchestrator asks of a run."""

    will_be_retried: bool = False
    logs: list[str] = field(default_factory=list)

    def log_message(self, message: str, level: str = "info", **_: Any) -> None:
        self.logs.append(f"{level}: {message}")


@dataclass
class Ctx:
    run: FakeRun
    trail: list[str] = field(default_factory=list)


class Ok(Step[Ctx]):
    def __init__(self, name: str) -> None:
        self.step_name = name

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.step_name

    async def execute(self, ctx: Ctx) -> None:
        ctx.trail.append(f"do {self.name}")

    async def rollback(self, ctx: Ctx) -> None:
        ctx.trail.append(f"undo {self.name}")


class Boom(Ok):
    async def execute(self, ctx: Ctx) -> None:
        ctx.trail.append(f"do {self.name}")
        raise ValueError("boom")


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_steps_run_in_order_each_in_a_child_span_of_the_run() -> None:
    provider, exporter = traced()
    tracer = provider.get_tracer("test")
    ctx = Ctx(FakeRun())
    with tracer.start_as_current_span("run") as run_span:
        await Orchestrator([Ok("a"), Ok("b")], tracer=tracer).run(ctx)
    assert ctx.trail == ["do a", "do b"]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"run", "step a", "step b"}
    for name in ("step a", "step b"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == run_span.get_span_context().span_id
        assert spans[name].attributes == {"runmesh.step": name.removeprefix("step ")}


async def test_a_failure_rolls_back_the_steps_that_ran_and_itself_in_reverse() -> None:
    provider, exporter = traced()
    ctx = Ctx(FakeRun())
    steps = [Ok("a"), Ok("b"), Boom("c"), Ok("d")]
    with pytest.raises(ValueError, match="boom"):
        await Orchestrator(steps, tracer=provider.get_tracer("t")).run(ctx)
    assert ctx.trail == ["do a", "do b", "do c", "undo c", "undo b", "undo a"]
    assert any("step c failed (boom); rolling back" in line for line in ctx.run.logs)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["step c"].status.status_code is StatusCode.ERROR
    assert {"rollback a", "rollback b", "rollback c"} <= set(spans)


async def test_a_run_that_will_be_retried_keeps_its_work() -> None:
    ctx = Ctx(FakeRun(will_be_retried=True))
    with pytest.raises(ValueError):
        await Orchestrator([Ok("a"), Boom("b")]).run(ctx)
    assert ctx.trail == ["do a", "do b"]
    assert "keeping what was written for the next attempt" in ctx.run.logs[-1]


async def test_a_failed_rollback_does_not_stop_the_others() -> None:
    class BadUndo(Ok):
        async def rollback(self, ctx: Ctx) -> None:
            raise RuntimeError("cannot undo")

    ctx = Ctx(FakeRun())
    with pytest.raises(ValueError):
        await Orchestrator([Ok("a"), BadUndo("b"), Boom("c")]).run(ctx)
    assert ctx.trail == ["do a", "do b", "do c", "undo c", "undo a"]
    assert any("rollback of step b failed" in line for line in ctx.run.logs)
