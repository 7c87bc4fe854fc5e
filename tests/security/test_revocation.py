"""Attack 6 (revocation): a revoked token keeps no open event stream.

REST answers 401 within the token cache TTL of a revocation; the SSE streams the token opened
(`GET /v1/events`, `GET /v1/runs/{id}/events`) must end within it too, however busy the run,
while the tenant's other tokens keep streaming. The token is revoked the operator's way:
`runmesh token revoke`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from runmesh.core.events import EVENT_TYPES, LogPayload, StartedPayload, encode
from runmesh.core.kafka import make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics

from ..conftest import GatewayHandle

pytestmark = pytest.mark.slow

TTL_S = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A tenant of the test's own and a short token cache TTL."""
    return settings.model_copy(
        update={"tenant": f"rev-{uuid.uuid4().hex[:8]}", "token_cache_ttl_s": TTL_S}
    )


class Ticker:
    """A run that never ends: run.started, then a run.log every 50 ms, straight to Kafka."""

    def __init__(self, settings: Settings) -> None:
        self.run_id = uuid.uuid4()
        self._tenant = settings.tenant
        self._topic = Topics(settings.topic_prefix).events
        self._producer: AIOKafkaProducer = make_producer(settings.kafka)
        self._seq = 0
        self.sent = 0

    async def send(self, event_type: str, payload: object) -> None:
        self._seq += 1
        event = EVENT_TYPES[event_type](
            run_id=self.run_id,
            attempt=1,
            seq=self._seq,
            ts=datetime.now(UTC),
            service="test",
            worker="ticker",
            tenant=self._tenant,
            category="test",
            payload=payload,
        )
        await self._producer.send_and_wait(
            self._topic, encode(event), key=str(self.run_id).encode()
        )

    async def run(self) -> None:
        await self._producer.start()
        try:
            started = StartedPayload(plugin="testkit", plugin_version="1", action="tick", params={})
            await self.send("run.started", started)
            while True:
                self.sent += 1
                await self.send("run.log", LogPayload(message=f"tick {self.sent}"))
                await asyncio.sleep(0.05)
        finally:
            await self._producer.stop()


@dataclass
class Stream:
    """An SSE stream read in the background: when each event arrived, and when it ended."""

    arrivals: list[float] = field(default_factory=list)
    ended_at: float | None = None


async def follow(http: httpx.AsyncClient, path: str, stream: Stream) -> None:
    async with http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                stream.arrivals.append(time.monotonic())
    stream.ended_at = time.monotonic()


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(10.0, read=60.0),
    ) as http:
        yield http


async def revoke_with_cli(settings: Settings, token: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env.update(settings.to_env())
    env["RUNMESH_HOME"] = str(home)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runmesh.cli",
        "token",
        "revoke",
        "-",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(token.encode() + b"\n"), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_a_revoked_tokens_open_streams_end_within_the_cache_ttl(
    gateway: GatewayHandle, settings: Settings, tmp_path: Path
) -> None:
    revoked, kept = await gateway.token(settings.tenant), await gateway.token(settings.tenant)
    ticker = Ticker(settings)
    ticking = asyncio.create_task(ticker.run())
    streams = {"run": Stream(), "tenant": Stream(), "kept": Stream()}
    try:
        async with api(gateway, revoked) as bad, api(gateway, kept) as good:
            await eventually(
                lambda: _exists(good, ticker.run_id), timeout=30, message="run never stored"
            )
            path = f"/v1/runs/{ticker.run_id}/events"
            readers = [
                asyncio.create_task(follow(bad, path, streams["run"])),
                asyncio.create_task(follow(bad, "/v1/events", streams["tenant"])),
                asyncio.create_task(follow(good, path, streams["kept"])),
            ]
            try:
                await eventually(
                    lambda: all(len(s.arrivals) >= 3 for s in streams.values()),
                    timeout=30,
                    message="streams never got events",
                )
                said = await revoke_with_cli(settings, revoked, tmp_path)
                revoked_at = time.monotonic()
                assert f"revoked 1 token of tenant {settings.tenant}" in said, said

                # REST refuses it within the TTL...
                async def refused() -> bool:
                    return (await bad.get("/v1/runs")).status_code == 401

                await eventually(refused, timeout=TTL_S + 10, message="REST still accepts it")
                # ...and its streams end within it too (generous margin for a loaded machine).
                await asyncio.wait(readers[:2], timeout=TTL_S + 15)
                for name in ("run", "tenant"):
                    stream = streams[name]
                    assert stream.ended_at is not None, f"the {name} stream is still open"
                    assert stream.ended_at - revoked_at < TTL_S + 10, name
                    late = [t for t in stream.arrivals if t > stream.ended_at]
                    assert not late, name
                # The run went on: the tenant's other token still streams it.
                last_end = max(streams["run"].ended_at or 0, streams["tenant"].ended_at or 0)
                await eventually(
                    lambda: any(t > last_end for t in streams["kept"].arrivals),
                    timeout=10,
                    message="the unrevoked token's stream stopped too",
                )
                assert not readers[2].done()
            finally:
                for reader in readers:
                    reader.cancel()
                results = await asyncio.gather(*readers, return_exceptions=True)
                for result in results[:2]:
                    if isinstance(result, BaseException) and not isinstance(
                        result, asyncio.CancelledError
                    ):
                        raise result
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking


async def _exists(http: httpx.AsyncClient, run_id: uuid.UUID) -> bool:
    return (await http.get(f"/v1/runs/{run_id}")).status_code == 200


async def test_token_revoke_by_tenant_and_name_and_its_mistakes(
    settings: Settings, tmp_path: Path
) -> None:
    from runmesh.core.db import apply_migrations, create_pool, load_migrations
    from runmesh.gateway.app import SCHEMA
    from runmesh.gateway.tokens import TokenCache, create_token

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env.update(settings.to_env())
    env["RUNMESH_HOME"] = str(tmp_path)

    async def cli(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "runmesh.cli", "token", "revoke", *args),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode()

    pool = await create_pool(settings.database, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
        tenant = settings.tenant
        ci = await create_token(pool, tenant, "ci")
        laptop = await create_token(pool, tenant, "laptop")
        other = await create_token(pool, f"{tenant}-other", "ci")

        assert (await cli())[0] == 2  # neither a token nor --tenant
        assert (await cli(ci, "--tenant", tenant))[0] == 2  # both
        assert (await cli("--name", "ci"))[0] == 2  # --name alone
        code, said = await cli("--tenant", tenant, "--name", "ci")
        assert code == 0 and f"revoked 1 token of tenant {tenant}" in said, said
        code, said = await cli("--tenant", tenant, "--name", "ci")
        assert code == 1 and "no unrevoked token matched" in said, said

        fresh = TokenCache(pool)  # a gateway that has cached nothing
        assert await fresh.lookup(ci) is None
        assert await fresh.lookup(laptop) == tenant
        assert await fresh.lookup(other) == f"{tenant}-other"
    finally:
        await pool.close()
