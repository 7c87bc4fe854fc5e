"""Stored run events as the SSE streams send them, and the reads that fetch them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol
from uuid import UUID

import asyncpg
import orjson

from runmesh.core.events import TERMINAL_EVENT_TYPES
from runmesh.core.notices import StreamedEvent
from runmesh.gateway import runs_store
from runmesh.gateway.runs_store import DB_TIMEOUT_S

PAGE_SIZE: Final = 500
"""Rows per query when catching up a run: bounds the memory one fetch can take."""

_EVENT_COLUMNS: Final = (
    "id, event_id, run_id, tenant, attempt, seq, type, ts, service, worker,"
    " payload::text AS payload"  # stored JSON is sent as is (see StoredEvent)
)
_STREAMED_FIELDS: Final = tuple(StreamedEvent.model_fields)
_MAX_RESYNC_RUNS: Final = 1_000  # runs of one tenant re-read after a reconnect


@dataclass(slots=True, frozen=True)
class StoredEvent:
    """One row of `runs.run_events`, serialized once for every client that receives it.

    `data` is the event as a `StreamedEvent`'s JSON and `frame` the complete SSE message
    carrying it; fan-out to N clients copies references, never re-encodes.
    """

    id: int
    run_id: UUID
    tenant: str
    type: str
    data: bytes
    frame: bytes

    @property
    def is_terminal_event(self) -> bool:
        """Whether this is a `run.succeeded`, `run.failed` or `run.cancelled` event."""
        return self.type in TERMINAL_EVENT_TYPES

    @classmethod
    def from_record(cls, record: asyncpg.Record | dict[str, Any]) -> StoredEvent:
        """Build from a row selected with the hub's event columns (payload as JSON text).

        The `StreamedEvent` fields are written straight from the row, its stored payload as
        stored: no decode and re-encode per event.
        """
        body = {name: record[name] for name in _STREAMED_FIELDS}
        body["payload"] = orjson.Fragment(record["payload"])
        data = orjson.dumps(body, default=_uuid_text)
        event_type: str = record["type"]
        return cls(
            id=record["id"],
            run_id=record["run_id"],
            tenant=record["tenant"],
            type=event_type,
            data=data,
            frame=sse_frame(event_type, data, event_id=record["id"]),
        )


def _uuid_text(value: object) -> str:
    # asyncpg's UUIDs subclass uuid.UUID, which orjson writes only when exact.
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def sse_frame(event: str, data: bytes, *, event_id: int | None = None) -> bytes:
    """One SSE message. `data` is single-line JSON; CR/LF in `event` would break framing."""
    name = event.replace("\r", " ").replace("\n", " ").encode()
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + b"event: " + name + b"\ndata: " + data + b"\n\n"


class EventStore(Protocol):
    """The reads the hub and the SSE routes make; a fake replaces it in unit tests."""

    async def events_after(self, run_id: UUID, after: int, limit: int) -> list[StoredEvent]:
        """Events of `run_id` with id > `after`, by id, at most `limit`."""
        ...

    async def tenant_events_after(self, tenant: str, after: int, limit: int) -> list[StoredEvent]:
        """The latest `limit` events of `tenant` with id > `after`, by id."""
        ...

    async def last_event_id(self, run_id: UUID | None) -> int:
        """The highest event id of `run_id` (of every run when None); 0 if there is none."""
        ...

    async def run_state(self, run_id: UUID) -> str | None:
        """The state of `run_id` in `runs.runs`, or None if it has no row."""
        ...

    async def runs_with_events_after(self, tenant: str, after: int) -> list[tuple[UUID, int]]:
        """(run_id, highest id) of the tenant's runs with events after `after`."""
        ...


class PgEventStore:
    """`EventStore` over the gateway's pool; every query has a timeout."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def events_after(self, run_id: UUID, after: int, limit: int) -> list[StoredEvent]:
        """Events of `run_id` with id > `after`, by id, at most `limit`."""
        rows = await self._pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM runs.run_events"
            " WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            run_id,
            after,
            limit,
            timeout=DB_TIMEOUT_S,
        )
        return [StoredEvent.from_record(row) for row in rows]

    async def tenant_events_after(self, tenant: str, after: int, limit: int) -> list[StoredEvent]:
        """The latest `limit` events of `tenant` with id > `after`, by id."""
        rows = await self._pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM runs.run_events"
            " WHERE tenant = $1 AND id > $2 ORDER BY id DESC LIMIT $3",
            tenant,
            after,
            limit,
            timeout=DB_TIMEOUT_S,
        )
        return [StoredEvent.from_record(row) for row in reversed(rows)]

    async def last_event_id(self, run_id: UUID | None) -> int:
        """The highest event id of `run_id` (of every run when None); 0 if there is none."""
        if run_id is None:
            value = await self._pool.fetchval(
                "SELECT coalesce(max(id), 0) FROM runs.run_events", timeout=DB_TIMEOUT_S
            )
        else:
            value = await self._pool.fetchval(
                "SELECT coalesce(max(id), 0) FROM runs.run_events WHERE run_id = $1",
                run_id,
                timeout=DB_TIMEOUT_S,
            )
        return int(value)

    async def run_state(self, run_id: UUID) -> str | None:
        """The state of `run_id` in `runs.runs`, or None if it has no row."""
        return await runs_store.run_state(self._pool, run_id)

    async def runs_with_events_after(self, tenant: str, after: int) -> list[tuple[UUID, int]]:
        """(run_id, highest id) of the tenant's runs with events after `after`."""
        rows = await self._pool.fetch(
            "SELECT run_id, max(id) AS last_id FROM runs.run_events"
            " WHERE id > $2 AND tenant = $1 GROUP BY run_id LIMIT $3",
            tenant,
            after,
            _MAX_RESYNC_RUNS,
            timeout=DB_TIMEOUT_S,
        )
        return [(row["run_id"], int(row["last_id"])) for row in rows]
