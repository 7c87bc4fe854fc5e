"""Which spans start a trace (`WithinRequestOrRun` under `ParentBased`)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind

from runmesh.core.trace_sampling import WithinRequestOrRun


def test_client_calls_are_kept_within_a_trace_and_dropped_alone() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root=WithinRequestOrRun()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    def pair(
        outer: str, kind: SpanKind, inner: str, inner_kind: SpanKind, **attributes: str
    ) -> None:
        # The inner span starts within the outer one (`with` enters them in order).
        with (
            tracer.start_as_current_span(outer, kind=kind, attributes=attributes),
            tracer.start_as_current_span(inner, kind=inner_kind),
        ):
            pass

    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
        pair(f"poll {kind.name}", kind, f"below {kind.name}", SpanKind.CLIENT)
    pair("POST /v1/runs", SpanKind.SERVER, "SELECT", SpanKind.CLIENT)
    run = {"runmesh.run_id": "r1"}
    pair("run test.echo", SpanKind.CONSUMER, "send events", SpanKind.PRODUCER, **run)
    with tracer.start_as_current_span("step initialize"):
        pass

    kept = {span.name for span in exporter.get_finished_spans()}
    assert kept == {"POST /v1/runs", "SELECT", "run test.echo", "send events", "step initialize"}
