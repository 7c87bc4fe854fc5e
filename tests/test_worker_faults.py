"""The worker when its infrastructure fails under it: the database goes away and comes back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from runmesh.core.errors import DependencyUnavailableError
from runmesh.core.events import RunSucceeded
from runmesh.core.retries import RETRIES
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.plugins import PluginRegistry
from runmesh.sandbox import EmbeddedPostgres
from runmesh.worker import Worker

from .conftest import RunClient, WorkerFactory


@pytest.mark.slow
async def test_requests_wait_for_the_database_to_come_back(
    client: RunClient,
    worker: WorkerFactory,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database of this test's own, so stopping it does not disturb the other tests.
    postgres = EmbeddedPostgres(tmp_path / "pg")
    await postgres.start()
    try:
        async with worker(database_url=postgres.dsn):
            await postgres.stop()
            with caplog.at_level(logging.WARNING, logger="runmesh.retries"):
                request = await client.submit("noop")
                await eventually(
                    lambda: "ledger.claim failed (" in caplog.text,
                    timeout=60,
                    message="the worker should report the unreachable ledger and retry",
                )
                claims_retried = sum(
                    count for (op, _), count in RETRIES.snapshot().items() if op == "ledger.claim"
                )
                assert claims_retried >= 1  # what /metrics serves as runmesh_retries_total
                assert not client.terminal(request.run_id)
                await postgres.start()  # same data directory and port
                terminal = await client.wait_terminal(request.run_id, timeout=60)
            assert isinstance(terminal, RunSucceeded)
            assert terminal.attempt == 1
    finally:
        await postgres.stop()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"kafka_bootstrap": "127.0.0.1:1"}, "cannot reach Kafka at 127.0.0.1:1"),
        (
            {"database_url": "postgresql://ops:hunter2@127.0.0.1:1/runs"},
            "cannot reach PostgreSQL at postgresql://ops:***@127.0.0.1:1/runs",
        ),
    ],
)
async def test_an_unreachable_server_at_start_is_one_clear_error(
    settings: Settings, registry: PluginRegistry, setting: dict[str, str], named: str
) -> None:
    worker = Worker("test", registry, settings.model_copy(update=setting))
    with pytest.raises(DependencyUnavailableError) as caught:
        await asyncio.wait_for(worker.run(), timeout=60)
    assert str(caught.value).startswith(named)
    assert "hunter2" not in str(caught.value)
