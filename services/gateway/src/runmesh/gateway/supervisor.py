"""Keep the gateway's background loops running: restart one that fails, with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 10.0


async def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run `run()` until cancelled; when it raises (Kafka or Postgres away), log and restart.

    The gateway keeps answering HTTP while a dependency is down; its loops pick up where they
    left off (committed offsets, unsent outbox rows) once it is back.
    """
    delay = 0.5
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting in %.1fs", name, delay)
        else:
            log.warning("%s returned; restarting in %.1fs", name, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_BACKOFF_S)
