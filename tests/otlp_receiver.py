"""A minimal OTLP/HTTP trace receiver for tests: what processes export, decoded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass
class ReceivedSpan:
    """One exported span and the `service.name` of the process that exported it."""

    service: str
    span: Span

    def attribute(self, key: str) -> object:
        """The span's attribute `key` as a plain value (None when absent)."""
        for pair in self.span.attributes:
            if pair.key == key:
                value = pair.value
                return getattr(value, value.WhichOneof("value") or "string_value")
        return None


@dataclass
class OtlpReceiver:
    """Export requests received on `endpoint` (keep-alive connections, one body each)."""

    port: int = 0
    bodies: list[bytes] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """The base URL an exporter is given (`OTEL_EXPORTER_OTLP_ENDPOINT`)."""
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        found = []
        for body in self.bodies:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                found += [
                    ReceivedSpan(service, span)
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
        return found

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.bodies.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the exporter closed its connection
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """An `OtlpReceiver` listening on a free loopback port until the block ends."""
    receiver = OtlpReceiver()
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
