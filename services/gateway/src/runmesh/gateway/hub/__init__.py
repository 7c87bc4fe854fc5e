"""In-memory fan-out of stored run events to SSE subscribers, driven by one LISTEN connection.

The aggregator commits events to `runs.run_events` and then sends a `RunNotice` on
`NOTIFY_CHANNEL` once per run it touched. `EventHub.run` holds one dedicated connection
listening on that channel for the whole process (`listener`); on each notice it reads the
run's new rows once and copies them into the bounded queue of every subscriber of that run and
every tenant-wide subscriber of its tenant (`fan_out`, over the `registry` of who follows
what). A subscriber whose queue is full is dropped (its stream ends and the client resumes
with `Last-Event-ID`), so a slow client never makes the gateway's memory grow.

Ordering and completeness rest on one property of the schema: within one run, `run_events.id`
grows in commit order (a run's events share a Kafka partition, which one aggregator inserts in
order, one transaction per batch). So a per-run cursor "highest id fetched" is exact, and a
subscriber that replays from the database after subscribing, then skips live rows with an id
it already sent, sees every row once.
"""

from __future__ import annotations

from runmesh.gateway.hub.event_hub import EventHub
from runmesh.gateway.hub.listener import LISTENER_APPLICATION_NAME
from runmesh.gateway.hub.stored_events import (
    PAGE_SIZE,
    EventStore,
    PgEventStore,
    StoredEvent,
    sse_frame,
)
from runmesh.gateway.hub.subscription import Subscription

__all__ = [
    "LISTENER_APPLICATION_NAME",
    "PAGE_SIZE",
    "EventHub",
    "EventStore",
    "PgEventStore",
    "StoredEvent",
    "Subscription",
    "sse_frame",
]
