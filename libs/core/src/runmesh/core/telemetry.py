"""OpenTelemetry tracing set-up and W3C `traceparent` propagation through Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from runmesh.core.settings_parts import TelemetrySettings

KafkaHeaders = Sequence[tuple[str, bytes]]


def setup_tracing(telemetry: TelemetrySettings, service_name: str) -> TracerProvider | None:
    """Install a tracer provider exporting over OTLP/HTTP when an endpoint is configured.

    Without `OTEL_EXPORTER_OTLP_ENDPOINT` spans are still created (trace ids keep flowing
    through headers) but nothing is exported. Returns the provider to shut down on exit.
    """
    if not telemetry.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The endpoint from settings, not the exporter's own reading of the environment: a job
    # child or a test gets the settings it was handed. OTLP/HTTP's base URL + /v1/traces.
    endpoint = telemetry.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider


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
