"""The base of the sandbox's servers: data directory, loopback port, timeouts and child process."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.processes import ChildProcess


class ServerPart:
    """A sandbox part that runs one server as a child process on a loopback TCP port.

    Holds what the parts share: `data_dir`, the port (given, or picked by the first `start()`
    and kept across restarts), the start and stop timeouts, and the `ChildProcess` whose output
    goes to `<data_dir>/<log_name>`. Subclasses build the command line and the readiness probe,
    hand them to `_launch()`, and stop the child their own way.
    """

    def __init__(
        self,
        part: str,
        data_dir: Path,
        log_name: str,
        port: int | None,
        start_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self.data_dir = data_dir
        self._port = port
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._child = ChildProcess(part, data_dir / log_name)

    @property
    def port(self) -> int:
        """The server's TCP port, fixed by the first `start()` and kept across restarts."""
        if self._port is None:
            raise SandboxError(self._child.part, "has no port before start()")
        return self._port

    @property
    def log_path(self) -> Path:
        """The file receiving the server's output (and, for postgres, initdb's)."""
        return self._child.log_path

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._child.running

    async def _launch(
        self,
        argv: Sequence[str],
        probe: Callable[[], Awaitable[bool]],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        death_signal: signal.Signals = signal.SIGTERM,
        abort_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """Spawn `argv` and poll `probe` until ready, within the start timeout.

        If it never gets ready (or the wait is cancelled), stop the child with `abort_signal`
        (SIGKILL after the stop timeout) and re-raise.
        """
        await self._child.spawn(argv, env=env, user=user, death_signal=death_signal)
        try:
            await self._child.wait_ready(probe, timeout_s=self._start_timeout_s)
        except BaseException:
            await self._child.stop(sig=abort_signal, timeout_s=self._stop_timeout_s)
            raise
