"""Session fixtures for every test: one sandbox (Tansu, Postgres, moto), settings per test and
settings per module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from runmesh.core.settings import Settings
from runmesh.sandbox import Sandbox


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox for the whole run; `RUNMESH_*` variables that are set replace its parts."""
    async with Sandbox(Settings()) as running:
        yield running


def fast_settings(sandbox: Sandbox, file_root: Path) -> Settings:
    """The sandbox's settings with a topic prefix of their own and fast test timings; `file`
    storages may be rooted under `file_root` (the tests' temporary directories)."""
    return sandbox.settings.model_copy(
        update={
            "topic_prefix": f"t{uuid4().hex[:10]}",
            "shutdown_grace_s": 10.0,
            "commit_interval_s": 0.2,
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 500,
            "cancel_grace_s": 1.0,
            # The runtime tests exercise the `task` method itself: the operator trusts the test
            # kit to run in the worker (tests/security runs it without that trust).
            "in_process_plugins": ["testkit"],
            # The operator's storage policy: the tests' file storages live in their tmp dirs.
            "storage_file_roots": [file_root],
        }
    )


@pytest.fixture
def settings(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The sandbox's settings with a topic prefix of the test's own and fast test timings."""
    return fast_settings(sandbox, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def module_settings(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Like `settings`, with a topic prefix shared by the module's tests (for a worker that
    several tests use); a test that starts, stops or kills workers of its own uses `settings`."""
    return fast_settings(sandbox, tmp_path_factory.getbasetemp())
