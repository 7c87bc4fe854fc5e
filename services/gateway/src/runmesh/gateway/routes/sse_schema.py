"""What the event streams send, as models, and their OpenAPI `responses`.

OpenAPI 3.1 has no way to say what the `data:` of an SSE message holds, so the
`text/event-stream` schema carries it as `x-sse-data` (a JSON Schema of its own, checked by
tests/security/test_schemathesis.py against real streams); the JSON answer of a run's events
(`Accept: application/json`) is a list of the same objects.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from runmesh.common.events import JsonObject
from runmesh.gateway.routes.support import problems


class StreamedEvent(BaseModel):
    """The `data:` of an SSE message with an `id:`: one stored run event."""

    id: int = Field(
        description="Its `runs.run_events` id: the SSE `id:`, sent back as "
        "`Last-Event-ID` to resume"
    )
    event_id: uuid.UUID = Field(description="The event's own id (deduplication)")
    run_id: uuid.UUID
    attempt: int = Field(ge=0)
    seq: int = Field(ge=0, description="Order within the attempt")
    type: str = Field(
        description="`run.started`, `run.log`, `run.progress`, ... (the SSE `event:`)"
    )
    ts: datetime
    service: str
    worker: str
    payload: JsonObject = Field(description="The event's own fields (docs/events.md)")


class RunStateNotice(BaseModel):
    """The `data:` of the `event: run.state` message (no `id:`) that ends a run's stream when
    the gateway itself ended the run, so no terminal event exists."""

    run_id: uuid.UUID
    state: str = Field(description="The run's terminal state")


def _stream(description: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"schema": {"type": "string", "description": description, "x-sse-data": data}}


RUN_EVENTS_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **problems(401, 404, 422),
    200: {
        "description": "`text/event-stream` (default) or, with `Accept: application/json`, "
        "the stored events as a JSON list",
        "content": {
            "text/event-stream": _stream(
                "SSE messages `id:`/`event:`/`data:` (StreamedEvent), and possibly a last "
                "`event: run.state` (RunStateNotice); `: heartbeat` comments in between",
                {"anyOf": [StreamedEvent.model_json_schema(), RunStateNotice.model_json_schema()]},
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
                "tenant; `: heartbeat` comments in between",
                StreamedEvent.model_json_schema(),
            )
        },
    },
}
