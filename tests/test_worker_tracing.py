"""The worker's run span (DESIGN §9): one per run, child of the request's `traceparent`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runmesh.core.events import RunFailed, RunRequest, RunSucceeded
from runmesh.core.settings import Settings
from runmesh.core.telemetry import header_value
from runmesh.core.testing import eventually
from runmesh.plugins import PluginRegistry
from runmesh.worker import Worker

from .conftest import CATEGORY, RunClient

PARENT_SPAN_ID = int("ab" * 8, 16)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Collects every span the test's own provider ends (never the process-global one)."""
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@contextlib.asynccontextmanager
async def traced_worker(
    settings: Settings, registry: PluginRegistry, exporter: InMemorySpanExporter
) -> AsyncIterator[Worker]:
    """An in-process worker whose spans go to `exporter` (the `worker` fixture, traced)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instance = Worker(CATEGORY, registry, settings, tracer_provider=provider)
    task = asyncio.create_task(instance.run())
    ready = asyncio.create_task(instance.ready.wait())
    await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises the start-up error
    assert instance.ready.is_set(), "worker did not start within 60s"
    try:
        yield instance
    finally:
        instance.request_stop()
        async with asyncio.timeout(60):
            await task
        provider.shutdown()


def run_spans(exporter: InMemorySpanExporter, run_id: uuid.UUID) -> list[ReadableSpan]:
    """The finished spans naming `run_id`."""
    return [
        span
        for span in exporter.get_finished_spans()
        if (span.attributes or {}).get("runmesh.run_id") == str(run_id)
    ]


@pytest.mark.parametrize(
    ("action", "params", "outcome"),
    [("echo", {"name": "ada", "count": 3}, "succeeded"), ("fail", {}, "failed")],
)
async def test_run_span_is_a_child_of_the_request_traceparent(
    client: RunClient,
    settings: Settings,
    registry: PluginRegistry,
    exporter: InMemorySpanExporter,
    action: str,
    params: dict[str, object],
    outcome: str,
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{PARENT_SPAN_ID:016x}-01"
    request = RunRequest(category=CATEGORY, action=action, params=params)
    async with traced_worker(settings, registry, exporter):
        await client.send(request, headers=[("traceparent", traceparent.encode())])
        terminal = await client.wait_terminal(request.run_id)
        # The span ends after the terminal event is acknowledged and the ledger written.
        await eventually(lambda: run_spans(exporter, request.run_id), timeout=5)
    assert isinstance(terminal, RunSucceeded if outcome == "succeeded" else RunFailed)

    spans = run_spans(exporter, request.run_id)
    assert len(spans) == 1, [s.name for s in spans]
    run_span = spans[0]
    assert run_span.parent is not None and run_span.parent.is_remote
    assert run_span.parent.span_id == PARENT_SPAN_ID
    assert run_span.parent.trace_id == int(trace_id, 16)
    assert run_span.context.trace_id == int(trace_id, 16)
    assert run_span.kind is SpanKind.CONSUMER
    assert run_span.name == f"run {CATEGORY}.{action}"
    assert dict(run_span.attributes or {}) == {
        "runmesh.run_id": str(request.run_id),
        "runmesh.attempt": 1,
        "runmesh.category": CATEGORY,
        "runmesh.action": action,
        "runmesh.state": outcome,
    }
    if outcome == "failed":
        assert run_span.status.status_code is StatusCode.ERROR
        assert "ValueError: boom" in (run_span.status.description or "")
    else:
        assert run_span.status.status_code is StatusCode.UNSET

    # Whatever else the worker traced of this run (steps) hangs under the run span.
    trace_spans = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == int(trace_id, 16)
    ]
    for span in trace_spans:
        if span is not run_span:
            assert span.parent is not None and span.parent.span_id == run_span.context.span_id

    # Every event of the run carries the run span as its parent, so readers join the trace.
    expected = f"00-{trace_id}-{run_span.context.span_id:016x}-01"
    assert client.headers[request.run_id]
    for headers in client.headers[request.run_id]:
        assert header_value(headers, "traceparent") == expected


async def test_a_request_without_traceparent_starts_its_own_trace(
    client: RunClient,
    settings: Settings,
    registry: PluginRegistry,
    exporter: InMemorySpanExporter,
) -> None:
    async with traced_worker(settings, registry, exporter):
        first = await client.submit("noop")
        second = await client.submit("noop")
        for request in (first, second):
            assert isinstance(await client.wait_terminal(request.run_id), RunSucceeded)
        await eventually(
            lambda: run_spans(exporter, first.run_id) and run_spans(exporter, second.run_id),
            timeout=5,
        )
    roots = [run_spans(exporter, r.run_id) for r in (first, second)]
    assert all(len(spans) == 1 and spans[0].parent is None for spans in roots)
    # Two runs never share a trace by accident (no context leaks between run tasks).
    assert roots[0][0].context.trace_id != roots[1][0].context.trace_id
