"""A bench's tenants: an API client with a fresh token, and its `GET /v1/events` stream
recording when each run started and ended."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import orjson

from runmesh.gateway.tokens import create_token

_TERMINAL = frozenset({"run.succeeded", "run.failed", "run.cancelled"})


class Stream:
    """A tenant's `GET /v1/events`: when each run's `run.started` and terminal event arrived
    (`time.perf_counter()`)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.open = asyncio.Event()

    async def follow(self) -> None:
        """Read the stream until cancelled."""
        headers = {"Accept": "text/event-stream"}
        async with self._http.stream("GET", "/v1/events", headers=headers) as response:
            self.open.set()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = orjson.loads(line[5:])
                kind, run_id = event.get("type"), str(event.get("run_id"))
                if kind == "run.started":
                    self.started.setdefault(run_id, time.perf_counter())
                elif kind in _TERMINAL:
                    self.ended.setdefault(run_id, time.perf_counter())
                else:
                    continue
                self.changed.set()

    async def until(self, done: Callable[[], bool], timeout_s: float = 600) -> None:
        """Wait until `done()` holds, looking again at each start or end."""
        async with asyncio.timeout(timeout_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def ended_at(self, run_id: str, timeout_s: float = 60) -> float:
        """When `run_id` ended, once it has."""
        await self.until(lambda: run_id in self.ended, timeout_s)
        return self.ended[run_id]


@contextlib.asynccontextmanager
async def tenant(
    base: str, pool: asyncpg.Pool, name: str, *, connections: int = 10
) -> AsyncIterator[tuple[httpx.AsyncClient, Stream]]:
    """An API client of a new tenant `name`, and its event stream (open)."""
    token = await create_token(pool, name)
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
        limits=httpx.Limits(max_connections=connections),
    ) as http:
        stream = Stream(http)
        following = asyncio.create_task(stream.follow())
        await asyncio.wait_for(stream.open.wait(), 60)
        try:
            yield http, stream
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
