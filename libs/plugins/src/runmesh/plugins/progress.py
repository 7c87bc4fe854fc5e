"""Progress coalescing: at most one update per category per interval, never losing the last."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class ProgressUpdate:
    """One progress value of a category."""

    category: str
    current: float
    total: float | None


class ProgressCoalescer:
    """Decides which `set_progress` calls become events (thread-safe).

    A tight loop may report progress a million times; the stream carries at most one event
    per category per `interval_s`, and the newest value is always delivered eventually by
    `due()` (called periodically by the owner) or `drain()` (called when the run ends).
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._last_sent: dict[str, float] = {}
        self._pending: dict[str, ProgressUpdate] = {}
        self._lock = threading.Lock()

    def offer(self, update: ProgressUpdate) -> ProgressUpdate | None:
        """Return the update if it should be sent now; otherwise keep it as pending."""
        now = self._clock()
        with self._lock:
            last = self._last_sent.get(update.category)
            if last is None or now - last >= self._interval:
                self._last_sent[update.category] = now
                self._pending.pop(update.category, None)
                return update
            self._pending[update.category] = update
            return None

    def due(self) -> list[ProgressUpdate]:
        """Pending updates whose category's interval has passed; they count as sent."""
        now = self._clock()
        with self._lock:
            ready = [
                update
                for category, update in self._pending.items()
                if now - self._last_sent.get(category, 0.0) >= self._interval
            ]
            for update in ready:
                del self._pending[update.category]
                self._last_sent[update.category] = now
            return ready

    def drain(self) -> list[ProgressUpdate]:
        """Every pending update, regardless of timing (the run is ending)."""
        with self._lock:
            ready = list(self._pending.values())
            self._pending.clear()
            return ready
