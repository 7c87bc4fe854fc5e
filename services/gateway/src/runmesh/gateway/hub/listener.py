"""The hub's NOTIFY listener: one PostgreSQL connection LISTENing for run notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

import asyncpg
from pydantic import ValidationError

from runmesh.core.errors import DependencyUnavailableError
from runmesh.core.notices import NOTIFY_CHANNEL, RunNotice

log = logging.getLogger(__name__)

LISTENER_APPLICATION_NAME: Final = "runmesh-gateway-listen"
"""`application_name` of the LISTEN connection."""

_CONNECT_TIMEOUT_S: Final = 10.0
_KEEPALIVE_INTERVAL_S: Final = 5.0  # a silently dead LISTEN connection is noticed within ~10 s

# Errors of one database round trip: the connection is given up.
_DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def parse_notice(payload: str) -> RunNotice | None:
    """The `RunNotice` a notification carries; None (and a warning) when it is not one."""
    try:
        return RunNotice.model_validate_json(payload)
    except ValidationError:
        log.warning("ignoring a malformed %s notification: %.200s", NOTIFY_CHANNEL, payload)
        return None


async def listen(
    database_url: str,
    on_notice: Callable[[RunNotice], None],
    serve: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """LISTEN on `NOTIFY_CHANNEL`, passing each notice to `on_notice`, and run `serve()`.

    `serve` starts once the connection listens, and runs until the connection is lost or it
    raises. Raises `DependencyUnavailableError` when the connection is closed or stops
    answering, and whatever `serve` raised; never returns otherwise.
    """
    conn: asyncpg.Connection = await asyncpg.connect(
        database_url,
        timeout=_CONNECT_TIMEOUT_S,
        # Named, so operators (and tests) can find it in pg_stat_activity.
        server_settings={"application_name": LISTENER_APPLICATION_NAME},
    )
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())

    def on_notification(_conn: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
        notice = parse_notice(payload)
        if notice is not None:
            on_notice(notice)

    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            await conn.add_listener(NOTIFY_CHANNEL, on_notification)
        tasks = [asyncio.create_task(serve()), asyncio.create_task(_watch(conn, lost))]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # raises why it stopped (both only end by raising)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _close(conn)


async def _watch(conn: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Raise once the LISTEN connection is closed or stops answering."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_KEEPALIVE_INTERVAL_S):
                await lost.wait()
        if lost.is_set() or conn.is_closed():
            raise DependencyUnavailableError("the LISTEN connection to PostgreSQL was closed")
        try:
            await conn.fetchval("SELECT 1", timeout=_KEEPALIVE_INTERVAL_S)
        except _DB_ERRORS as exc:
            raise DependencyUnavailableError(
                f"the LISTEN connection to PostgreSQL stopped answering: {exc}"
            ) from exc


async def _close(conn: asyncpg.Connection) -> None:
    """Close politely within a few seconds, else drop the socket."""
    if conn.is_closed():
        return
    try:
        async with asyncio.timeout(5):
            await conn.close()
    except _DB_ERRORS:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
