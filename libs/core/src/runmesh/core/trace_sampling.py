"""Which new traces are kept: those a request or a run starts, not a client call's alone."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

_CLIENT_KINDS = frozenset({SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER})
_RUNMESH_PREFIX = "runmesh."


class WithinRequestOrRun(Sampler):
    """The root sampler (under `ParentBased`): drops a client call that starts a trace.

    Background loops poll PostgreSQL and Kafka all the time (the outbox, the dispatcher,
    worker presence); traced alone, each poll would be a trace of one span. A request
    (server span), a run (its `runmesh.*` attributes) or a job step starts a trace; a SQL
    statement, an HTTP call or a Kafka send or receive is kept within one.
    """

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Drop a client, producer or consumer span with no run attribute; keep the rest."""
        ours = any(key.startswith(_RUNMESH_PREFIX) for key in attributes or {})
        if kind in _CLIENT_KINDS and not ours:
            return SamplingResult(Decision.DROP, None, trace_state)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)

    def get_description(self) -> str:
        """What the sampler keeps, as OpenTelemetry's `Sampler` interface asks."""
        return "WithinRequestOrRun"
