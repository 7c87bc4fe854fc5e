"""Keep `runmesh dev`'s services running: restart one that dies, with backoff and a bound."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runmesh.cli.services import ServiceSpec, start_service
from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.processes import ChildProcess

log = logging.getLogger("runmesh.dev")

WINDOW_S: Final = 60.0

Starter = Callable[[ServiceSpec, Path], Awaitable[ChildProcess]]


@dataclass(slots=True, frozen=True)
class RestartPolicy:
    """How often a dead service is started again.

    The first restart waits `first_delay_s`; each further restart within `WINDOW_S` waits twice
    as long as the one before, up to `max_delay_s`. After `max_per_minute` restarts within
    `WINDOW_S` the service is left down: a service that cannot stay up needs a person (its
    log says why), not a restart loop that floods the log.
    """

    max_per_minute: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0


def exit_description(status: int) -> str:
    """`status 1` or `signal SIGKILL` (asyncio reports a signal as a negative status)."""
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


class _Supervised:
    """One service: its spec (to start it again) and its current process."""

    def __init__(self, spec: ServiceSpec, child: ChildProcess) -> None:
        self.spec = spec
        self.child: ChildProcess | None = child
        self.restarts: deque[float] = deque()  # loop times of the restarts within WINDOW_S


class Supervision:
    """Watches `runmesh dev`'s service processes and restarts one that exits on its own.

    Each restart is logged (`runmesh.dev`, on stderr) with the exit status, the delay and the
    count within the last minute; a service past `RestartPolicy.max_per_minute` is left down
    with an error naming its log. `aclose()` stops watching first, then stops the services in
    the reverse order they were added, so nothing is restarted while `runmesh dev` stops.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        policy: RestartPolicy | None = None,
        start: Starter = start_service,
    ) -> None:
        self._log_dir = log_dir
        self._policy = policy or RestartPolicy()
        self._start = start
        self._services: list[_Supervised] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False

    def add(self, spec: ServiceSpec, child: ChildProcess) -> None:
        """Watch `child`, which runs `spec`, from now on."""
        service = _Supervised(spec, child)
        self._services.append(service)
        task = asyncio.create_task(self._watch(service), name=f"supervise {spec.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def child(self, name: str) -> ChildProcess | None:
        """The process now running the service `name` (None while it is down)."""
        return next((s.child for s in self._services if s.spec.name == name), None)

    async def aclose(self) -> None:
        """Stop watching, then stop every service, the last added first."""
        self._closing = True
        watchers = list(self._watchers)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for service in reversed(self._services):
            if service.child is not None:
                await service.child.stop()

    async def _watch(self, service: _Supervised) -> None:
        loop = asyncio.get_running_loop()
        name = service.spec.name
        log_path = self._log_dir / f"{name}.log"
        child = service.child
        pid = child.pid if child is not None else None
        status = await child.exited() if child is not None else 1
        while not self._closing:
            now = loop.time()
            while service.restarts and now - service.restarts[0] > WINDOW_S:
                service.restarts.popleft()
            recent = len(service.restarts)
            if recent >= self._policy.max_per_minute:
                log.error(
                    "%s (pid %s) exited with %s; not restarting it: it was restarted %d times "
                    "within %gs (see %s)",
                    name,
                    pid,
                    exit_description(status),
                    recent,
                    WINDOW_S,
                    log_path,
                )
                service.child = None
                return
            delay = min(self._policy.first_delay_s * 2**recent, self._policy.max_delay_s)
            log.warning(
                "%s (pid %s) exited with %s; restarting it in %gs (restart %d within %gs)",
                name,
                pid,
                exit_description(status),
                delay,
                recent + 1,
                WINDOW_S,
            )
            await asyncio.sleep(delay)
            service.restarts.append(loop.time())
            service.child = child = await self._restart(service)
            # A start that failed counts as a restart that exited at once.
            pid = child.pid if child is not None else None
            status = await child.exited() if child is not None else 1

    async def _restart(self, service: _Supervised) -> ChildProcess | None:
        """Start the service again; None (logged) when it did not come up."""
        try:
            child = await self._start(service.spec, self._log_dir)
        except SandboxError as exc:
            log.warning("%s did not start again: %s", service.spec.name, exc.summary)
            return None
        log.warning("%s restarted (pid %s)", service.spec.name, child.pid)
        return child
