"""asyncpg pools with timeouts and JSON codecs."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from runmesh.core.errors import ConfigurationError
from runmesh.core.settings_parts import DatabaseSettings


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(
    database: DatabaseSettings, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """A pool to `RUNMESH_DATABASE_URL` whose queries time out instead of hanging."""
    if not database.url:
        raise ConfigurationError(
            "RUNMESH_DATABASE_URL is not set (start the sandbox with `runmesh dev`)"
        )
    pool = await asyncpg.create_pool(
        database.url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        timeout=10,
        init=_init_connection,
        **kwargs,
    )
    if pool is None:  # asyncpg's stubs allow it; a created pool is never None
        raise ConfigurationError("could not create a database pool")
    return pool
