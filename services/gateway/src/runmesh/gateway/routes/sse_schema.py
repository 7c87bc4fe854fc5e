"""The OpenAPI `responses` of the event streams, from the models of what they send.

The models (`StreamedEvent`, `RunStateNotice`) live beside the wire events in
`runmesh.core.events`: the CLI and the dashboard read what the gateway writes.

OpenAPI 3.1 has no way to say what the `data:` of an SSE message holds, so the
`text/event-stream` schema carries it as `x-sse-data` (a JSON Schema of its own, checked by
tests/security/test_schemathesis.py against real streams); the JSON answer of a run's events
(`Accept: application/json`) is a list of the same objects.
"""

from __future__ import annotations

from typing import Any, Final

from runmesh.core.notices import RunStateNotice, StreamedEvent, StreamGapNotice
from runmesh.gateway.queue_view import RunQueueNotice
from runmesh.gateway.routes.support import problems


def _stream(description: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"schema": {"type": "string", "description": description, "x-sse-data": data}}


RUN_EVENTS_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **problems(401, 404, 422),
    200: {
        "description": "`text/event-stream` (default) or, with `Accept: application/json`, "
        "the stored events as a JSON list",
        "content": {
            "text/event-stream": _stream(
                "SSE messages `id:`/`event:`/`data:` (StreamedEvent); while the run is queued, "
                "`event: run.queue` messages without `id:` (RunQueueNotice) saying why it "
                "waits; possibly a last `event: run.state` (RunStateNotice); `: heartbeat` "
                "comments in between",
                {
                    "anyOf": [
                        StreamedEvent.model_json_schema(),
                        RunQueueNotice.model_json_schema(),
                        RunStateNotice.model_json_schema(),
                    ]
                },
            ),
            "application/json": {
                "schema": {"type": "array", "items": StreamedEvent.model_json_schema()}
            },
        },
    },
}

TENANT_EVENTS_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **problems(401, 422),
    200: {
        "description": "`text/event-stream`",
        "content": {
            "text/event-stream": _stream(
                "SSE messages `id:`/`event:`/`data:` (StreamedEvent) of every run of the "
                "tenant; `: heartbeat` comments in between; after a `Last-Event-ID` older "
                "than the replay reaches, first an `event: gap` message without `id:` "
                "(StreamGapNotice)",
                {
                    "anyOf": [
                        StreamedEvent.model_json_schema(),
                        StreamGapNotice.model_json_schema(),
                    ]
                },
            )
        },
    },
}
