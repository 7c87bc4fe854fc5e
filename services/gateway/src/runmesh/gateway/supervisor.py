"""Keep the gateway's background loops running: restart one that fails, with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 10.0
HEALTHY_S = 60.0
"""A loop that ran this long before it stopped was healthy: its next restart waits the first
delay again, not the doubled one an earlier outage left behind."""


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `run()` until cancelled; when it raises (Kafka or Postgres away), log and restart.

    The gateway keeps answering HTTP while a dependency is down; its loops pick up where they
    left off (committed offsets, unsent outbox rows) once it is back. Restarts back off from
    0.5 s, doubling up to 10 s while the loop keeps failing quickly.
    """
    delay = _FIRST_BACKOFF_S
    while True:
        began = clock()
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = _FIRST_BACKOFF_S if clock() - began >= HEALTHY_S else delay
            log.exception("%s failed; restarting in %.1fs", name, delay)
        else:
            delay = _FIRST_BACKOFF_S if clock() - began >= HEALTHY_S else delay
            log.warning("%s returned; restarting in %.1fs", name, delay)
        await sleep(delay)
        delay = min(delay * 2, _MAX_BACKOFF_S)
