"""Fixtures for cross-service tests: the test plugin, workers in and out of process, a client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import (
    TERMINAL_EVENT_TYPES,
    CancelRun,
    RunEventBase,
    RunRequest,
    decode_event,
    encode,
)
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.plugins import PluginRegistry
from runmesh.sandbox.processes import free_port
from runmesh.worker import Worker, build_registry

PLUGINS = Path(__file__).parent / "plugins"
CATEGORY = "test"


@pytest.fixture
def registry() -> PluginRegistry:
    """The test-only plugin under tests/plugins."""
    registry = PluginRegistry()
    registry.scan([PLUGINS])
    return registry


class RunClient:
    """Submits requests straight to Kafka and collects every run event of the test's topics."""

    def __init__(self, settings: Settings, category: str = CATEGORY) -> None:
        self.settings = settings
        self.category = category
        self.topics = Topics(settings.topic_prefix)
        self.events: dict[uuid.UUID, list[RunEventBase]] = defaultdict(list)
        self.headers: dict[uuid.UUID, list[list[tuple[str, bytes]]]] = defaultdict(list)
        self._producer: AIOKafkaProducer = make_producer(settings.kafka)
        config = consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"}
        self._consumer = AIOKafkaConsumer(self.topics.events, **config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka,
            [
                self.topics.requests(self.category),
                self.topics.dlq(self.category),
                self.topics.events,
                self.topics.control,
                self.topics.plugins,
            ],
        )
        await self._producer.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._producer.stop()

    async def _collect(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = decode_event(record.value or b"")
                    self.events[event.run_id].append(event)
                    self.headers[event.run_id].append(list(record.headers))

    async def submit(
        self, action: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> RunRequest:
        kw.setdefault("tenant", self.settings.tenant)
        request = RunRequest(category=self.category, action=action, params=params or {}, **kw)
        await self.send(request)
        return request

    async def send(
        self, request: RunRequest, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        await self._producer.send_and_wait(
            self.topics.requests(self.category),
            encode(request),
            key=str(request.run_id).encode(),
            headers=headers or [],
        )

    async def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(self.topics.requests(self.category), value, key=key)

    async def cancel(self, run_id: uuid.UUID) -> None:
        await self._producer.send_and_wait(
            self.topics.control, encode(CancelRun(run_id=run_id)), key=str(run_id).encode()
        )

    def terminal(self, run_id: uuid.UUID) -> list[RunEventBase]:
        return [e for e in self.events[run_id] if e.type in TERMINAL_EVENT_TYPES]

    async def wait_terminal(self, run_id: uuid.UUID, timeout: float = 20) -> RunEventBase:
        await eventually(
            lambda: self.terminal(run_id), timeout=timeout, message=f"run {run_id} never ended"
        )
        return self.terminal(run_id)[-1]

    async def wait_event(
        self, run_id: uuid.UUID, event_type: str, timeout: float = 20
    ) -> RunEventBase:
        def found() -> RunEventBase | None:
            return next((e for e in self.events[run_id] if e.type == event_type), None)

        result = await eventually(found, timeout=timeout, message=f"no {event_type} for {run_id}")
        assert isinstance(result, RunEventBase)
        return result


class TrackingRunClient(RunClient):
    """A `RunClient` that remembers the runs it sent, so a test's unfinished ones can be ended."""

    def __init__(self, settings: Settings, category: str) -> None:
        super().__init__(settings, category)
        self.sent: list[uuid.UUID] = []

    async def send(
        self, request: RunRequest, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self.sent.append(request.run_id)
        await super().send(request, headers)

    async def end_unfinished(self, first: int) -> None:
        """Cancel the runs sent from `sent[first]` on that have not ended; wait until they end."""
        unfinished = [run_id for run_id in self.sent[first:] if not self.terminal(run_id)]
        for run_id in unfinished:
            await self.cancel(run_id)
        for run_id in unfinished:
            await self.wait_terminal(run_id, timeout=30)


@contextlib.asynccontextmanager
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    """`settings` on a database of their own in the sandbox's cluster, dropped on leaving: for
    tests that read what every run or worker of the database adds up to (queue positions,
    live workers), which other test files' gateways would otherwise add to."""
    assert settings.database_url, "the sandbox sets a database URL"
    name = f"own_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        url = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))
        yield settings.model_copy(update={"database_url": url})
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@contextlib.asynccontextmanager
async def tenant_client(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of `tenant` (with a fresh token) on `gateway`."""
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


async def until_plugin_known(api: Any, code: str = "testkit", timeout: float = 120) -> None:
    """Until the gateway behind `api` (an httpx client with a token) knows plugin `code`: a
    worker announces its plugins as it starts, and the gateway reads them a moment later."""

    async def known() -> bool:
        return bool((await api.get(f"/v1/plugins/{code}")).status_code == 200)

    await eventually(known, timeout=timeout, message=f"plugin {code} never announced")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[RunClient]:
    """A `RunClient` on the test's own topics."""
    run_client = RunClient(settings)
    await run_client.start()
    yield run_client
    await run_client.stop()


WorkerFactory = Callable[..., contextlib.AbstractAsyncContextManager[Worker]]


@pytest.fixture
def worker(settings: Settings, registry: PluginRegistry) -> WorkerFactory:
    """`async with worker(**setting_overrides) as w:` runs an in-process worker for the test."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Worker]:
        instance = Worker(CATEGORY, registry, settings.model_copy(update=overrides))
        task = asyncio.create_task(instance.run())
        ready = asyncio.create_task(instance.ready.wait())
        await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()  # raises the start-up error
        assert instance.ready.is_set(), "worker did not start within 60s"
        try:
            yield instance
        finally:
            instance.request_stop()
            await asyncio.wait_for(task, timeout=60)

    return start


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a service subprocess that uses the same servers and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env.update(settings.to_env())
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """`service_env` with the test plugin on the plugin path (for the `test` category)."""
    return service_env(settings.model_copy(update={"plugin_path": [PLUGINS]}))


class ServiceProcesses:
    """`python -m <module>` services in processes of their own (for kill tests), on the
    test's servers and topics; logs in `log_dir/w1.log`, `w2.log`, ...; every process still
    running is killed on leaving."""

    def __init__(self, settings: Settings, module: str, log_dir: Path) -> None:
        self._env = service_env(settings)
        self._module = module
        self._log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        """One more service process."""
        with self.log_path(len(self.started)).open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", self._module], env=self._env, stdout=out, stderr=out
            )
        self.started.append(process)
        return process

    def log_path(self, index: int) -> Path:
        """The log of the `index`-th process started (from 0)."""
        return self._log_dir / f"w{index + 1}.log"

    def log_tail(self, index: int, chars: int = 3000) -> str:
        """The end of that process's log (for an assertion's message)."""
        return self.log_path(index).read_text(errors="replace")[-chars:]

    def __enter__(self) -> ServiceProcesses:
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


class WorkerProcess:
    """A worker in its own process (`python -m runmesh.worker`), for kill tests."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runmesh.worker", "--category", CATEGORY],
            env=settings_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 60) -> None:
        await eventually(
            lambda: "serving" in self.log_text(),
            timeout=timeout,
            message=f"worker {self.pid} did not start",
        )

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
async def worker_process(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[Callable[[], WorkerProcess]]:
    """Starts worker subprocesses; every one is killed at teardown."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        process = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


class GatewayHandle:
    """A gateway served by uvicorn in this process, over real HTTP on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app: Any = None
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start (or restart, on the same port) the gateway and wait until it serves."""
        import uvicorn

        from runmesh.gateway.app import create_app

        self.app = create_app(self.settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        await eventually(
            lambda: self._server.started or self._task.done(), timeout=60, message="gateway"
        )
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        """Graceful shutdown: the lifespan closes its loops and pool."""
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=60)
            self._task = None

    async def token(self, tenant: str = "tenant-a") -> str:
        """A fresh API token of `tenant`."""
        from runmesh.gateway.tokens import create_token

        return await create_token(self.app.state.deps.pool, tenant)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayHandle]:
    """A running gateway on the test's own topics (same settings as `worker` and `client`)."""
    handle = GatewayHandle(settings)
    await handle.start()
    yield handle
    await handle.stop()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the sandbox database with the catalog schema applied."""
    db = await create_pool(settings.database, min_size=1, max_size=4)
    await apply_migrations(db, "catalog", load_migrations("runmesh.catalog"))
    yield db
    await db.close()


@contextlib.asynccontextmanager
async def service_worker(
    settings: Settings,
    category: str,
    builtin_plugin: Path,
    *,
    service: str,
    tracer_provider: TracerProvider | None = None,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    """A category service in this process with its built-in plugin (plus `plugin_path`'s),
    as `python -m runmesh.<service>` builds it; leaving stops it."""
    settings = settings.model_copy(update=overrides)
    registry = build_registry(settings, [builtin_plugin])
    worker = Worker(category, registry, settings, service=service, tracer_provider=tracer_provider)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(60):
        await worker.ready.wait()
    try:
        yield worker
    finally:
        worker.request_stop()
        async with asyncio.timeout(60):
            await task


@contextlib.asynccontextmanager
async def shared_worker_client(client: TrackingRunClient) -> AsyncIterator[TrackingRunClient]:
    """`client` of a module's shared worker for one test: the test's runs that did not end
    are cancelled when it leaves, so the next test finds the worker idle."""
    first = len(client.sent)
    yield client
    await client.end_unfinished(first)
