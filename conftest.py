"""Session fixtures for every test: one sandbox (Tansu, Postgres, moto) and per-test settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from runmesh.common.sandbox import Sandbox
from runmesh.common.settings import Settings


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox for the whole run; `RUNMESH_*` variables that are set replace its parts."""
    async with Sandbox(Settings()) as running:
        yield running


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    """The sandbox's settings with a topic prefix of the test's own and fast test timings."""
    return sandbox.settings.model_copy(
        update={
            "topic_prefix": f"t{uuid4().hex[:10]}",
            "shutdown_grace_s": 10.0,
            "commit_interval_s": 0.2,
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 500,
            "cancel_grace_s": 1.0,
        }
    )
