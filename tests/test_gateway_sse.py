"""SSE over real HTTP: a real worker and gateway on Tansu and PostgreSQL, clients reading streams.

Runs are submitted straight to Kafka (`client`) as `settings.tenant`, which their events carry;
each test has a tenant of its own, so the dashboard stream only ever sees the test's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway.routes import events as events_routes

from .conftest import GatewayHandle, RunClient, WorkerFactory

pytestmark = pytest.mark.slow

STREAM_TIMEOUT_S = 40.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The root settings with a tenant of the test's own and quick heartbeats."""
    return settings.model_copy(
        update={"tenant": f"sse-{uuid.uuid4().hex[:8]}", "sse_heartbeat_s": 0.5}
    )


@dataclass(slots=True, frozen=True)
class Message:
    """One SSE message as a client sees it (`comment` for `: ...` lines)."""

    id: int | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Parse an SSE body into messages and comments (the subset of the format we send)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Message(comment=line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            if "data" in fields:
                yield Message(
                    id=int(fields["id"]) if "id" in fields else None,
                    event=fields.get("event"),
                    data=orjson.loads(fields["data"]),
                )
            fields = {}


class Api:
    """An httpx client of the test's gateway with one tenant's token."""

    def __init__(self, gateway: GatewayHandle, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=gateway.url, headers=headers, timeout=httpx.Timeout(10.0, read=30.0)
        )

    async def close(self) -> None:
        await self.http.aclose()

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, resume_after: int | None = None, params: dict[str, Any] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """GET an SSE stream; `resume_after` goes out as the `Last-Event-ID` header."""
        headers = {"Accept": "text/event-stream"}
        if resume_after is not None:
            headers["Last-Event-ID"] = str(resume_after)
        async with self.http.stream("GET", path, headers=headers, params=params) as response:
            yield response

    async def read_events(
        self, path: str, *, count: int | None = None, **kw: Any
    ) -> tuple[list[Message], list[Message]]:
        """(events, everything) read until the server ends the stream or `count` events came."""
        events: list[Message] = []
        everything: list[Message] = []
        async with asyncio.timeout(STREAM_TIMEOUT_S), self.stream(path, **kw) as response:
            assert response.status_code == 200, await response.aread()
            async for message in messages(response):
                everything.append(message)
                if message.id is not None:
                    events.append(message)
                    if count is not None and len(events) == count:
                        break
        return events, everything

    async def stored(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"}
        )
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        return events


@pytest.fixture
async def api(gateway: GatewayHandle, settings: Settings) -> AsyncIterator[Api]:
    """A client with a token of the tenant the test's Kafka-submitted runs belong to."""
    client = Api(gateway, await gateway.token(settings.tenant))
    yield client
    await client.close()


def pool_of(gateway: GatewayHandle) -> asyncpg.Pool:
    pool: asyncpg.Pool = gateway.app.state.deps.pool
    return pool


async def wait_for_row(gateway: GatewayHandle, run_id: uuid.UUID) -> None:
    """Until the aggregator created the run's row (the stream answers 404 before)."""

    async def exists() -> bool:
        found = await pool_of(gateway).fetchval("SELECT 1 FROM runs.runs WHERE id = $1", run_id)
        return found is not None

    await eventually(exists, timeout=30, message=f"no row for run {run_id}")


async def wait_for_state(gateway: GatewayHandle, run_id: uuid.UUID, state: str) -> None:
    async def reached() -> bool:
        found = await pool_of(gateway).fetchval("SELECT state FROM runs.runs WHERE id = $1", run_id)
        return bool(found == state)

    await eventually(reached, timeout=30, message=f"run {run_id} never {state}")


def assert_increasing(events: list[Message]) -> None:
    ids = [event.id or 0 for event in events]
    assert all(a < b for a, b in itertools.pairwise(ids)), ids


def path_of(run_id: uuid.UUID) -> str:
    return f"/v1/runs/{run_id}/events"


async def test_a_run_stream_replays_then_follows_live_and_ends_after_the_terminal_event(
    gateway: GatewayHandle, api: Api, client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("sleep", {"seconds": 2.0, "steps": 20})
        await wait_for_row(gateway, request.run_id)
        async with api.stream(path_of(request.run_id)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
        events, _ = await api.read_events(path_of(request.run_id))
        await client.wait_terminal(request.run_id)

    assert_increasing(events)
    types = [event.event for event in events]
    assert types[0] == "run.started" and types[-1] == "run.succeeded"
    assert types.count("run.progress") >= 5
    for message in events:  # the SSE id, event name and JSON body agree
        assert message.data["id"] == message.id and message.data["type"] == message.event
        assert message.data["run_id"] == str(request.run_id)
        assert set(message.data) == {
            "id", "event_id", "run_id", "attempt", "seq", "type", "ts", "service", "worker",
            "payload",
        }  # fmt: skip
    # Exactly what the worker published, in its order.
    published = [str(event.event_id) for event in client.events[request.run_id]]
    assert [message.data["event_id"] for message in events] == published
    assert [message.data["seq"] for message in events] == list(range(1, len(events) + 1))
    assert events[-1].data["payload"]["result"]["slept"] == 2.0


async def test_reconnecting_with_last_event_id_resumes_with_no_gap_and_no_duplicate(
    gateway: GatewayHandle, api: Api, client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("sleep", {"seconds": 3.0, "steps": 30})
        await wait_for_row(gateway, request.run_id)
        path = path_of(request.run_id)
        head, _ = await api.read_events(path, count=4)
        assert head[-1].id is not None
        rest, _ = await api.read_events(path, resume_after=head[-1].id)
        await client.wait_terminal(request.run_id)

    stored = await api.stored(request.run_id)
    assert [m.id for m in head + rest] == [event["id"] for event in stored]
    assert rest[-1].event == "run.succeeded"
    # An EventSource-less client resumes with the query parameter; a finished run's stream
    # replays the rest and ends.
    middle = stored[len(stored) // 2]["id"]
    tail, _ = await api.read_events(path, params={"last_event_id": middle})
    assert [m.id for m in tail] == [event["id"] for event in stored if event["id"] > middle]


async def test_resuming_across_a_gateway_restart_loses_and_repeats_nothing(
    gateway: GatewayHandle, api: Api, client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("sleep", {"seconds": 6.0, "steps": 30})
        await wait_for_row(gateway, request.run_id)
        path = path_of(request.run_id)
        head, _ = await api.read_events(path, count=3)
        await gateway.stop()
        await gateway.start()  # same port, same database; the run goes on meanwhile
        assert head[-1].id is not None
        rest, _ = await api.read_events(path, resume_after=head[-1].id)
        terminal = await client.wait_terminal(request.run_id)

    assert terminal.type == "run.succeeded"
    ids = [m.id for m in head + rest]
    assert len(ids) == len(set(ids))
    stored = await api.stored(request.run_id)
    assert ids == [event["id"] for event in stored]
    assert [m.data["event_id"] for m in head + rest] == [
        str(event.event_id) for event in client.events[request.run_id]
    ]


async def test_stored_events_as_json_and_who_may_read_them(
    gateway: GatewayHandle, api: Api, client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("echo", {"name": "ada", "count": 20})
        await client.wait_terminal(request.run_id)
    await wait_for_state(gateway, request.run_id, "succeeded")
    path = path_of(request.run_id)
    stored = await api.stored(request.run_id)
    assert [event["event_id"] for event in stored] == [
        str(event.event_id) for event in client.events[request.run_id]
    ]
    assert stored[0]["type"] == "run.started" and stored[-1]["type"] == "run.succeeded"
    streamed, _ = await api.read_events(path)
    assert [m.data for m in streamed] == stored
    # JSON pages: `limit` events after the last id seen, as the stream resumes.
    first = await api.http.get(path, params={"limit": 5}, headers={"Accept": "application/json"})
    rest = await api.http.get(
        path,
        headers={"Accept": "application/json", "Last-Event-ID": str(first.json()[-1]["id"])},
    )
    assert first.json() + rest.json() == stored
    assert len(first.json()) == 5

    stranger = Api(gateway, await gateway.token("someone-else"))
    anonymous = Api(gateway, None)
    forged = Api(gateway, "rmt_not-a-token")
    try:
        for accept in ("application/json", "text/event-stream"):
            response = await stranger.http.get(path, headers={"Accept": accept})
            assert response.status_code == 404  # another tenant's run does not exist for them
            assert response.headers["content-type"] == "application/problem+json"
        response = await api.http.get(path_of(uuid.uuid4()))
        assert response.status_code == 404
        assert (await anonymous.http.get(path)).status_code == 401
        assert (await forged.http.get(path)).status_code == 401
        assert (await anonymous.http.get("/v1/events")).status_code == 401
        response = await api.http.get(path, headers={"Last-Event-ID": "seven"})
        assert response.status_code == 422
    finally:
        for other in (stranger, anonymous, forged):
            await other.close()


async def test_the_dashboard_stream_carries_every_run_of_the_tenant_and_no_other(
    gateway: GatewayHandle,
    api: Api,
    client: RunClient,
    worker: WorkerFactory,
    settings: Settings,
) -> None:
    # A run of another tenant: its row exists before its events arrive, so it keeps its tenant.
    foreign = uuid.uuid4()
    await pool_of(gateway).execute(
        "INSERT INTO runs.runs (id, tenant, category, action, submitted_via)"
        " VALUES ($1, 'someone-else', 'test', 'echo', 'kafka')",
        foreign,
    )
    received: list[Message] = []

    async def follow() -> None:
        async with api.stream("/v1/events") as response:
            assert response.status_code == 200
            async for message in messages(response):
                if message.id is not None:
                    received.append(message)

    async with worker():
        dashboard = asyncio.create_task(follow())
        try:
            await eventually(lambda: gateway.app.state.deps.hub.subscriber_count == 1, timeout=10)
            ours = [await client.submit("echo", {"name": f"n{i}", "count": 5}) for i in range(3)]
            theirs = RunRequest(
                run_id=foreign, category="test", action="echo", params={"name": "x", "count": 5}
            )
            await client.send(theirs)
            for request in [*ours, theirs]:
                await client.wait_terminal(request.run_id)
            expected = sum(len(client.events[r.run_id]) for r in ours)
            await eventually(lambda: len(received) >= expected, timeout=20)
            await wait_for_state(gateway, foreign, "succeeded")
            await asyncio.sleep(0.5)  # a foreign event, were it forwarded, would be here by now
        finally:
            dashboard.cancel()
            await asyncio.gather(dashboard, return_exceptions=True)

    by_run: dict[str, list[Message]] = {}
    for message in received:
        by_run.setdefault(message.data["run_id"], []).append(message)
    assert set(by_run) == {str(r.run_id) for r in ours}  # nothing of the other tenant
    for request in ours:
        got = by_run[str(request.run_id)]
        assert [m.data["event_id"] for m in got] == [
            str(e.event_id) for e in client.events[request.run_id]
        ]
        assert_increasing(got)
    assert await eventually(lambda: gateway.app.state.deps.hub.subscriber_count == 0)

    # A dashboard reconnecting with Last-Event-ID first gets what it missed (newest window).
    first = received[0].id
    assert first is not None
    replayed, _ = await read_until_quiet(api, "/v1/events", resume_after=first)
    assert [m.id for m in replayed] == sorted(m.id for m in received if m.id and m.id > first)


async def test_a_resume_older_than_the_replay_reaches_is_told_of_the_gap(
    gateway: GatewayHandle,
    api: Api,
    client: RunClient,
    worker: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_routes, "TENANT_REPLAY_LIMIT", 5)
    async with worker():
        request = await client.submit("echo", {"name": "gap", "count": 8})
        await client.wait_terminal(request.run_id)
    await wait_for_state(gateway, request.run_id, "succeeded")
    stored = await api.stored(request.run_id)
    assert len(stored) > 6

    _, everything = await read_until_quiet(api, "/v1/events", resume_after=stored[0]["id"])
    gap, *replay = [m for m in everything if m.comment is None]
    assert (gap.id, gap.event) == (None, "gap")
    assert gap.data == {"after": stored[0]["id"], "resumes_at": stored[-5]["id"]}
    assert [m.id for m in replay] == [event["id"] for event in stored[-5:]]

    # Within the replay's reach: no gap message.
    _, everything = await read_until_quiet(api, "/v1/events", resume_after=stored[-4]["id"])
    assert [m.event for m in everything if m.comment is None and m.id is None] == []


async def read_until_quiet(api: Api, path: str, **kw: Any) -> tuple[list[Message], list[Message]]:
    """Read a never-ending stream until its first heartbeat (the replay is over by then)."""
    events: list[Message] = []
    everything: list[Message] = []
    async with asyncio.timeout(STREAM_TIMEOUT_S), api.stream(path, **kw) as response:
        async for message in messages(response):
            everything.append(message)
            if message.comment == "heartbeat":
                break
            if message.id is not None:
                events.append(message)
    return events, everything


async def test_an_idle_stream_heartbeats_and_a_run_ended_by_the_gateway_ends_it(
    gateway: GatewayHandle, api: Api, settings: Settings
) -> None:
    run_id = uuid.uuid4()
    pool = pool_of(gateway)
    await pool.execute(
        "INSERT INTO runs.runs (id, tenant, category, action, deployment)"
        " VALUES ($1, $2, 'test', 'echo', $3)",
        run_id,
        settings.tenant,
        settings.topic_prefix,
    )
    everything: list[Message] = []

    async def follow() -> None:
        async with api.stream(path_of(run_id)) as response:
            async for message in messages(response):
                everything.append(message)

    stream = asyncio.create_task(follow())
    try:
        # Queued, nothing happens: the connection is kept alive by comments.
        await eventually(lambda: sum(m.comment == "heartbeat" for m in everything) >= 2, timeout=10)
        # The cancel watchdog's way: state terminal, no event, NOTIFY with terminal true.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE runs.runs SET state = 'cancelled', finished_at = now() WHERE id = $1",
                run_id,
            )
            await conn.execute(
                "SELECT pg_notify('runmesh_events', $1)",
                orjson.dumps(
                    {"tenant": settings.tenant, "run_id": str(run_id), "last_id": 0,
                     "terminal": True}
                ).decode(),
            )  # fmt: skip
        await asyncio.wait_for(stream, 10)  # the server ended the stream
    finally:
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
    said = [m for m in everything if m.comment is None]
    # While queued, it said why (what it waits for depends on the other tests' workers).
    assert said[0].event == "run.queue", said
    assert said[0].data["run_id"] == str(run_id) and said[0].data["reason"], said[0]
    final = [m for m in said if m.event != "run.queue"]
    assert final == [Message(event="run.state", data={"run_id": str(run_id), "state": "cancelled"})]
    # Connecting to the finished run: the same synthetic end, at once.
    _, again = await api.read_events(path_of(run_id))
    assert [m for m in again if m.comment is None] == final


async def test_a_client_that_goes_away_is_unsubscribed(
    gateway: GatewayHandle, api: Api, settings: Settings
) -> None:
    run_id = uuid.uuid4()
    await pool_of(gateway).execute(
        "INSERT INTO runs.runs (id, tenant, category, action) VALUES ($1, $2, 'test', 'echo')",
        run_id,
        settings.tenant,
    )
    hub = gateway.app.state.deps.hub
    for path in (path_of(run_id), "/v1/events"):
        async with api.stream(path) as response:
            assert response.status_code == 200
            await eventually(lambda: hub.subscriber_count == 1, timeout=10)
        await eventually(lambda: hub.subscriber_count == 0, timeout=10)
