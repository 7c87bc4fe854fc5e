"""OpenTelemetry tracing set-up, the client libraries' instrumentation, and W3C
`traceparent` propagation through Kafka headers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased

from runmesh.core.settings_parts import TelemetrySettings
from runmesh.core.trace_sampling import WithinRequestOrRun

KafkaHeaders = Sequence[tuple[str, bytes]]

_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
_clients_traced = False


def setup_tracing(telemetry: TelemetrySettings, service_name: str) -> TracerProvider | None:
    """Install a tracer provider exporting over OTLP/HTTP when an endpoint is configured.

    Without `OTEL_EXPORTER_OTLP_ENDPOINT` spans are still created (trace ids keep flowing
    through headers) but nothing is exported. With it, the process's Kafka, PostgreSQL and
    HTTP clients are traced too (`instrument_clients`). Returns the provider to shut down on
    exit.
    """
    if not telemetry.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The endpoint from settings, not the exporter's own reading of the environment: a job
    # child or a test gets the settings it was handed. OTLP/HTTP's base URL + /v1/traces.
    endpoint = telemetry.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(root=WithinRequestOrRun()),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    instrument_clients()
    return provider


def instrument_clients() -> None:
    """Trace every Kafka send and receive, SQL statement and HTTP request of this process.

    The instrumentation patches the client classes, so it is process-wide and happens once;
    spans go to the global tracer provider. SQL spans name the statement, never its values.
    """
    global _clients_traced
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    asyncpg_instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (AIOKafkaInstrumentor(), asyncpg_instrumentor, HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    _clients_traced = True


@contextlib.contextmanager
def sending_in_trace(headers: list[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    """The headers to send a record with, within the trace they carry.

    Untraced clients send them as they are. A traced producer opens a send span and writes
    its own context into the headers: so the span joins the trace the record belongs to
    (a stored request's, a run's), that trace becomes the current context for the send, and
    the record's own trace headers are left out rather than sent twice.
    """
    if not _clients_traced:
        yield headers
        return
    token = otel_context.attach(extract_context(headers))
    try:
        yield [(name, value) for name, value in headers if name not in _TRACE_HEADERS]
    finally:
        otel_context.detach(token)


def inject_headers(ctx: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the current (or given) trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return [(key, value.encode()) for key, value in carrier.items()]


def extract_context(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    """The trace context a record's headers carry (an empty context when there is none)."""
    carrier = {key: value.decode("latin-1") for key, value in headers or ()}
    return propagate.extract(carrier)


def header_value(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The first header called `name`, decoded, or None."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for a process that cannot share it (a job)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_carrier(carrier: dict[str, str]) -> otel_context.Context:
    """The trace context `trace_carrier` wrote, to attach on the other side."""
    return propagate.extract(carrier)
