"""Child processes of the sandbox: free ports, parent-death binding, log files, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from runmesh.sandbox.errors import SandboxError

LOOPBACK = "127.0.0.1"

_logger = logging.getLogger("runmesh.sandbox")

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_TAIL_BYTES = 16 * 1024


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal_preexec(death_signal: signal.Signals) -> Callable[[], None] | None:
    """Return a `preexec_fn` asking Linux to signal the child when this process dies.

    The kernel sends the signal when the *thread* that forked exits, so children must be
    forked from the event-loop thread (asyncio subprocesses are), never from a worker thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolve prctl in the parent: after fork only async-signal-safe work should happen.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), death_signal)

    return preexec


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def _read_tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
            data = file.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


async def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last `lines` lines of the log at `path` ("" when it cannot be read)."""
    return await asyncio.to_thread(_read_tail, path, lines)


class ChildProcess:
    """One long-running child of a sandbox part, bound to this process's lifetime.

    The child runs in its own session (a Ctrl-C in the terminal reaches only the parent, which
    stops the parts in order) and, on Linux, gets `death_signal` if the parent dies, so it
    never outlives a killed test run or CLI. Its stdout and stderr go to `log_path`.
    """

    def __init__(self, part: str, log_path: Path) -> None:
        self.part = part
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """Whether the child was spawned and has not been seen to exit."""
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it exited, else None."""
        return None if self._process is None else self._process.returncode

    @property
    def pid(self) -> int | None:
        """The child's process id once spawned, else None."""
        return None if self._process is None else self._process.pid

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        death_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """Start `argv` (as `user` when given: needs root); output is appended to the log."""
        if self.running:
            raise SandboxError(self.part, "already running", log_path=self.log_path)
        group: int | None = None
        extra_groups: list[int] | None = None
        if user is not None:
            # Popen's `user` changes only the uid: drop root's group and supplementary groups too.
            import pwd

            group, extra_groups = pwd.getpwnam(user).pw_gid, []
        log_fd = await asyncio.to_thread(_open_log, self.log_path)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                user=user,
                group=group,
                extra_groups=extra_groups,
                start_new_session=True,
                preexec_fn=_death_signal_preexec(death_signal),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(
                self.part, f"cannot run {argv[0]}: {exc}", log_path=self.log_path
            ) from exc
        finally:
            os.close(log_fd)
        _logger.debug("%s: started pid %d: %s", self.part, self._process.pid, " ".join(argv))

    async def wait_ready(
        self, probe: Callable[[], Awaitable[bool]], *, timeout_s: float, interval_s: float = 0.05
    ) -> None:
        """Poll `probe` until it returns True; fail if the child exits or `timeout_s` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._process is None or self._process.returncode is not None:
                raise await self.failure(f"exited with status {self.returncode} while starting")
            if await probe():
                return
            if loop.time() >= deadline:
                raise await self.failure(f"not ready within {timeout_s:g}s")
            await asyncio.sleep(interval_s)

    async def stop(
        self, *, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 10.0
    ) -> int | None:
        """Send `sig`, wait up to `timeout_s`, then SIGKILL the child's process group.

        Returns the exit status (None if it was never started). Safe to call twice.
        """
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await self.wait(timeout_s=timeout_s)
            except TimeoutError:
                _logger.warning(
                    "%s: pid %d ignored %s for %gs; killing it",
                    self.part,
                    process.pid,
                    sig.name,
                    timeout_s,
                )
                # Not yet reaped, so its process group id cannot have been reused.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await self.wait(timeout_s=10.0)
        return process.returncode

    async def wait(self, *, timeout_s: float) -> int | None:
        """Wait up to `timeout_s` for the child to exit; raise TimeoutError if it did not."""
        process = self._process
        if process is None:
            return None
        # asyncio.wait_for rather than asyncio.timeout: on 3.11 the latter turns its own expiry
        # into CancelledError when the task is already being cancelled (a Ctrl-C at start-up).
        return await asyncio.wait_for(process.wait(), timeout_s)  # noqa: TID251

    async def exited(self) -> int:
        """Wait, however long it takes, until the child exits; its exit status.

        A supervisor's wait: a negative status is the signal that ended the child.
        """
        if self._process is None:
            raise SandboxError(self.part, "was never started", log_path=self.log_path)
        return await self._process.wait()

    async def failure(self, problem: str) -> SandboxError:
        """Build the error for `problem`, with the tail of the child's log."""
        return SandboxError(
            self.part, problem, log_path=self.log_path, log_tail=await log_tail(self.log_path)
        )


async def run_command(
    part: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    timeout_s: float,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a short command to completion (initdb, pg_ctl), its output appended to `log_path`.

    Raises SandboxError naming the command when it fails or outlives `timeout_s`.
    """
    child = ChildProcess(part, log_path)
    name = Path(argv[0]).name
    await child.spawn(argv, env=env, user=user)
    try:
        status = await child.wait(timeout_s=timeout_s)
    except TimeoutError:
        await child.stop(sig=signal.SIGKILL, timeout_s=5.0)
        raise await child.failure(f"{name} did not finish within {timeout_s:g}s") from None
    except BaseException:
        await child.stop(sig=signal.SIGKILL, timeout_s=5.0)
        raise
    if status != 0:
        raise await child.failure(f"{name} exited with status {status}")


async def tcp_accepts(host: str, port: int, *, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to host:port succeeds within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
