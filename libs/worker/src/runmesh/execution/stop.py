"""A request to stop a running attempt: cancellation, timeout or worker shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from runmesh.execution.outcome import Cancelled, Failed, Outcome

StopKind = Literal["cancel", "timeout", "shutdown"]


class StopSignal:
    """Set once; the first reason wins (a cancel after a timeout does not change the outcome)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.kind: StopKind | None = None
        self.reason = ""
        self._callbacks: list[Callable[[], None]] = []

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call `callback` when a stop is requested (at once if it already was)."""
        if self.kind is not None:
            callback()
        else:
            self._callbacks.append(callback)

    def request(self, kind: StopKind, reason: str) -> None:
        """Ask the attempt to stop; later requests are ignored."""
        if self.kind is None:
            self.kind = kind
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    @property
    def requested(self) -> bool:
        """True once a stop was requested."""
        return self.kind is not None

    async def wait(self) -> None:
        """Return when a stop is requested."""
        await self._event.wait()

    def outcome(self) -> Outcome:
        """The outcome of an attempt that stopped for this signal's reason."""
        if self.kind == "timeout":
            return Failed("Timeout", self.reason)
        if self.kind == "shutdown":
            return Failed("WorkerShutdown", self.reason, retryable=True)
        return Cancelled(self.reason)
