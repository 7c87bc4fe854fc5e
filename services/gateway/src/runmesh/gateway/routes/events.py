"""Server-Sent Events: one run's events (replay, then live) and the tenant's dashboard stream.

Message format (both streams): `id: <runs.run_events.id>`, `event: <type>`, `data: <event as
JSON>`. `id` is what a client sends back as `Last-Event-ID` to resume; a comment line
`: heartbeat` keeps idle connections open.

A run's stream ends once the run is terminal in `runs.runs`, after every stored event. A run
the gateway ended itself (a cancel that was never confirmed) has no terminal event: its stream
then ends with one synthetic message without an `id:`, `event: run.state`,
`data: {"run_id": ..., "state": ...}`, so clients learn why it ended. While a run is queued,
its stream also sends `event: run.queue` messages without `id:` (RunQueueNotice): where the
run stands and why it waits, first at once, then within QUEUE_RECHECK_S of each change. Any
stream also ends when its client is too slow to keep up (its queue in the hub filled) or the
database is briefly unreachable; clients reconnect with `Last-Event-ID` and lose nothing. A
stream whose token is revoked ends within RUNMESH_TOKEN_CACHE_TTL_S, with nothing more sent
(a reconnect then gets 401).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Final
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Send

from runmesh.core.events import TERMINAL_STATES
from runmesh.core.notices import RunStateNotice, StreamGapNotice
from runmesh.gateway import runs_store
from runmesh.gateway.auth import AuthenticatedCaller
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import InvalidRequest, NotFound
from runmesh.gateway.hub import PAGE_SIZE, EventStore, StoredEvent, sse_frame
from runmesh.gateway.queue_view import RunQueueNotice, queue_views
from runmesh.gateway.routes.run_ids import RunId
from runmesh.gateway.routes.sse_schema import RUN_EVENTS_RESPONSES, TENANT_EVENTS_RESPONSES
from runmesh.gateway.routes.support import INT64_MAX, Int64, MeasuredRoute
from runmesh.gateway.tokens import TokenWatch

log = logging.getLogger(__name__)

# MeasuredRoute times the answer's start (headers), not the stream's lifetime.
router = APIRouter(prefix="/v1", tags=["events"], route_class=MeasuredRoute)

TENANT_REPLAY_LIMIT: Final = 1000
"""At most this many of the tenant's latest events are replayed on `GET /v1/events`."""

HEARTBEAT: Final = b": heartbeat\n\n"
QUEUE_RECHECK_S: Final = 5.0
"""How stale a queued run's last `event: run.queue` message may get."""
_RETRY: Final = b"retry: 2000\n\n"  # EventSource reconnect delay; also flushes the headers
_STREAM_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` whose generator is always closed, also when the client vanishes.

    Starlette cancels the sending task on disconnect; closing the generator explicitly runs
    its `finally` (the hub unsubscribe) at once rather than whenever it is collected.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncGenerator[bytes, None]) -> None:
        super().__init__(content, headers=_STREAM_HEADERS)
        self._generator = content

    async def stream_response(self, send: Send) -> None:
        """Stream the body, then close the generator whatever happened."""
        async with contextlib.aclosing(self._generator):
            await super().stream_response(send)


DEFAULT_JSON_EVENTS: Final = 1000
MAX_JSON_EVENTS: Final = 10_000


def _resume_point(header: str | None, query: int | None) -> int | None:
    """The id to resume after: the header (EventSource sets it on reconnect) wins."""
    if header is not None and header.strip():
        try:
            value = int(header.strip())
        except ValueError:
            value = -1
        if not 0 <= value <= INT64_MAX:
            raise InvalidRequest(
                f"Last-Event-ID must be an event id (0 to {INT64_MAX}), not {header[:40]!r}",
                errors=[{"loc": ["header", "Last-Event-ID"], "msg": "not an event id"}],
            )
        return value
    return query


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/event-stream" not in accept


@router.get(
    "/runs/{run_id}/events",
    summary="A run's events: replayed, then live (SSE), or stored (JSON)",
    response_class=Response,
    responses=RUN_EVENTS_RESPONSES,
)
async def run_events(
    run_id: RunId,
    request: Request,
    caller: AuthenticatedCaller,
    deps: Annotated[Deps, Depends(get_deps)],
    last_event_id: Annotated[
        Int64 | None,
        Query(ge=0, description="Resume after this id (if no Last-Event-ID header)"),
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_JSON_EVENTS, description="Most events in a JSON answer")
    ] = DEFAULT_JSON_EVENTS,
) -> Response:
    """Stream the run's events after `Last-Event-ID`, then live until the run is terminal.

    With `Accept: application/json`, answer up to `limit` stored events after it as a list
    instead; page on with `last_event_id` = the `id` of the last one.
    """
    tenant = caller.tenant
    state = await runs_store.run_state(deps.pool, run_id, tenant)
    if state is None:
        raise NotFound(f"run {run_id} not found")
    store = deps.hub.store
    after = _resume_point(last_event_id_header, last_event_id) or 0
    if _wants_json(request):
        page = await store.events_after(run_id, after, limit)
        body = b"[" + b",".join(event.data for event in page) + b"]"
        return Response(body, media_type="application/json")
    watch = deps.tokens.watch(caller.token, tenant)
    return EventStreamResponse(_run_stream(deps, tenant, run_id, after, watch))


async def _stored(store: EventStore, run_id: UUID, after: int) -> AsyncIterator[StoredEvent]:
    """The run's stored events after `after`, a page at a time (bounded memory)."""
    while True:
        page = await store.events_after(run_id, after, PAGE_SIZE)
        for event in page:
            yield event
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].id


async def _run_stream(
    deps: Deps, tenant: str, run_id: UUID, after: int, watch: TokenWatch
) -> AsyncGenerator[bytes, None]:
    heartbeat_s = deps.settings.sse_heartbeat_s
    store = deps.hub.store
    last = after  # the highest id sent: replayed and live rows at or below it are skipped
    sent_terminal_event = False
    yield _RETRY
    try:
        # Subscribe first, then replay: a row committed in between arrives both ways and is
        # sent once; none can fall between the two.
        async with deps.hub.subscribe(tenant, run_id) as sub:
            # State before replay: if it is terminal, the replay includes its final events.
            state = await store.run_state(run_id)
            async for event in _stored(store, run_id, last):
                yield event.frame
                last = event.id
                sent_terminal_event |= event.is_terminal_event
            queue = _QueueWatch(deps, tenant, run_id) if state == "queued" else None
            while state not in TERMINAL_STATES:
                if not await watch.still_valid():
                    log.info("ending the event stream of run %s: its token was revoked", run_id)
                    return
                if queue is not None and (frame := await queue.changed()) is not None:
                    yield frame
                if queue is not None and queue.started:
                    queue = None
                wait_s = min(heartbeat_s, watch.due_in())
                try:
                    live = await sub.get(timeout=min(wait_s, QUEUE_RECHECK_S) if queue else wait_s)
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                if live is None:
                    if sub.dropped:
                        return  # too slow: the client resumes from `last`
                    state = sub.ended_state
                    break
                if live.id > last:
                    yield live.frame
                    last = live.id
                    sent_terminal_event |= live.is_terminal_event
    except _DB_ERRORS as exc:
        log.warning("ending the event stream of run %s: %s", run_id, exc)
        return
    if not sent_terminal_event and not await _terminal_event_sent_before(deps, run_id, last):
        assert state is not None  # the stream above only ends this way on a terminal state
        notice = RunStateNotice(run_id=run_id, state=state)
        yield sse_frame("run.state", notice.model_dump_json().encode())


class _QueueWatch:
    """A queued run's `event: run.queue` messages: where it stands, sent when that changes."""

    def __init__(self, deps: Deps, tenant: str, run_id: UUID) -> None:
        self._deps = deps
        self._tenant = tenant
        self._run_id = run_id
        self._last: RunQueueNotice | None = None
        self.started = False
        """The run is no longer queued: nothing more to say."""

    async def changed(self) -> bytes | None:
        """The message to send if where the run stands changed since the last one."""
        row = await runs_store.get_run(self._deps.pool, self._tenant, self._run_id)
        queue = (
            (await queue_views(self._deps.pool, self._deps.topics.prefix, [row])).get(self._run_id)
            if row
            else None
        )
        if queue is None:
            self.started = True
            return None
        notice = RunQueueNotice(run_id=self._run_id, **queue.model_dump())
        if notice == self._last:
            return None
        self._last = notice
        return sse_frame("run.queue", notice.model_dump_json().encode())


async def _terminal_event_sent_before(deps: Deps, run_id: UUID, last: int) -> bool:
    """Whether a terminal event at or before `last` exists (the client already has it)."""
    try:
        return await runs_store.has_terminal_event(deps.pool, run_id, last)
    except _DB_ERRORS:
        return False


@router.get(
    "/events",
    summary="Live events of every run of the tenant (dashboard stream, SSE)",
    response_class=Response,
    responses=TENANT_EVENTS_RESPONSES,
)
async def tenant_events(
    caller: AuthenticatedCaller,
    deps: Annotated[Deps, Depends(get_deps)],
    last_event_id: Annotated[
        Int64 | None,
        Query(ge=0, description="Resume after this id (if no Last-Event-ID header)"),
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Stream new events of all the tenant's runs; never ends on its own.

    With `Last-Event-ID`, first replay the tenant's events after it, at most the latest
    1,000 (a dashboard catching up, not an archive); when more followed it, an `event: gap`
    message (no `id:`) says so first, naming the first id replayed.
    """
    after = _resume_point(last_event_id_header, last_event_id)
    watch = deps.tokens.watch(caller.token, caller.tenant)
    return EventStreamResponse(_tenant_stream(deps, caller.tenant, after, watch))


async def _tenant_stream(
    deps: Deps, tenant: str, after: int | None, watch: TokenWatch
) -> AsyncGenerator[bytes, None]:
    heartbeat_s = deps.settings.sse_heartbeat_s
    yield _RETRY
    try:
        async with deps.hub.subscribe(tenant, None) as sub:
            # Ids across runs are not strictly in commit order, so the replay is deduplicated
            # by exact id (at most TENANT_REPLAY_LIMIT of them), not by "id <= last".
            replayed: set[int] = set()
            if after is not None:
                # One more than replayed: its presence means events were skipped.
                events = await deps.hub.store.tenant_events_after(
                    tenant, after, TENANT_REPLAY_LIMIT + 1
                )
                if len(events) > TENANT_REPLAY_LIMIT:
                    events = events[1:]
                    gap = StreamGapNotice(after=after, resumes_at=events[0].id)
                    yield sse_frame("gap", gap.model_dump_json().encode())
                for event in events:
                    yield event.frame
                    replayed.add(event.id)
            while True:
                if not await watch.still_valid():
                    log.info("ending the event stream of tenant %r: its token was revoked", tenant)
                    return
                try:
                    live = await sub.get(timeout=min(heartbeat_s, watch.due_in()))
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                if live is None:
                    return  # dropped (too slow): the client resumes with Last-Event-ID
                if live.id not in replayed:
                    yield live.frame
    except _DB_ERRORS as exc:
        log.warning("ending the event stream of tenant %r: %s", tenant, exc)
