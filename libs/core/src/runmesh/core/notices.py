"""The gateway's notices and streams: the models beside the wire events that never go on Kafka.

A PostgreSQL notification between gateway replicas (`RunNotice` on `NOTIFY_CHANNEL`), and what
the gateway's SSE streams send to clients (the CLI's `watch`, the dashboard). Documented in
the gateway's OpenAPI (`x-sse-data` of the event streams), not in the AsyncAPI document of the
topics, which `runmesh.core.events` generates.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from runmesh.core.events import JsonObject

NOTIFY_CHANNEL: Final = "runmesh_events"
"""The PostgreSQL channel `RunNotice`s are sent on; every gateway replica's SSE hub listens."""


class RunNotice(BaseModel):
    """The payload of a notification on `NOTIFY_CHANNEL`: a run has new stored events, or ended.

    Sent in the transaction that changed the run (PostgreSQL delivers it on commit, so a
    listener never hears of a row it cannot read yet): by the aggregator once per run per
    batch of events, and by the gateway when it ends a run itself (a cancel). Notices of one
    run may be coalesced by the reader; they say where to look, the rows say what happened.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    tenant: str = Field(description="The run's tenant: whose streams may see its events")
    run_id: uuid.UUID
    last_id: int | None = Field(
        default=None,
        description="The run's highest `runs.run_events` id when sent; null = unknown",
    )
    terminal: bool = Field(
        default=False, description="The run may have ended: its state is worth reading"
    )


class StreamedEvent(BaseModel):
    """The `data:` of an SSE message with an `id:`: one stored run event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: uuid.UUID
    state: str = Field(description="The run's terminal state")


class StreamGapNotice(BaseModel):
    """The `data:` of the `event: gap` message (no `id:`) that the tenant stream sends before
    its replay when more events followed `Last-Event-ID` than it replays: the client missed
    some and should list runs again instead of trusting its copy."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    after: int = Field(description="The `Last-Event-ID` the client resumed from")
    resumes_at: int = Field(description="The id of the first event replayed after the gap")
