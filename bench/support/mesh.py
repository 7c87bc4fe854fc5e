"""An in-process mesh for the benches: the embedded sandbox, a gateway served by uvicorn on a
free port and a worker of the test kit's category `test` (its actions trusted in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvicorn

from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway.app import create_app
from runmesh.sandbox import Sandbox
from runmesh.sandbox.processes import free_port
from runmesh.worker import Worker
from runmesh.worker.process import build_registry

PLUGIN = Path(__file__).resolve().parent.parent.parent / "tests" / "plugins"


@dataclass(slots=True, frozen=True)
class Mesh:
    """What a bench talks to."""

    settings: Settings
    url: str
    pool: asyncpg.Pool
    """The gateway's database pool (for tokens and limits)."""


@contextlib.asynccontextmanager
async def mesh_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A `test` worker on the mesh's topics, serving until the block ends."""
    worker = Worker("test", build_registry(settings), settings)
    working = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 60)
    try:
        yield worker
    finally:
        worker.request_stop()
        await working


@contextlib.asynccontextmanager
async def local_mesh(*, with_worker: bool = True) -> AsyncIterator[Mesh]:
    """Start the sandbox, the gateway and (unless `with_worker` is false: see `mesh_worker`)
    a `test` worker; stop them all on leaving."""
    async with Sandbox(Settings()) as sandbox:
        settings = sandbox.settings.model_copy(
            update={
                "topic_prefix": f"b{uuid.uuid4().hex[:8]}",
                "plugin_path": [PLUGIN],
                "in_process_plugins": ["testkit"],
            }
        )
        port = free_port()
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, timeout=60, message="gateway")
        try:
            mesh = Mesh(settings, f"http://127.0.0.1:{port}", app.state.deps.pool)
            if not with_worker:
                yield mesh
                return
            async with mesh_worker(settings):
                yield mesh
        finally:
            server.should_exit = True
            await serving
