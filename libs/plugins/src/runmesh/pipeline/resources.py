"""What a service action's pipeline opens for one run, and how it is closed again."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import asyncpg

from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.settings import Settings
from runmesh.storage import Storage

log = logging.getLogger(__name__)


async def open_catalog_pool(settings: Settings) -> asyncpg.Pool:
    """A small pool for one run's catalog work, with the catalog migrations applied.

    Applying them is idempotent and runs under an advisory lock: a worker may start before
    any gateway did. A published plugin's job skips them (`catalog_migrations` off): its
    worker applied them before it made the run's database role, which may not.
    """
    pool: asyncpg.Pool = await create_pool(settings.database, min_size=1, max_size=4)
    if settings.catalog_migrations:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
    return pool


async def close_run_resources(
    storages: Iterable[Storage | None], pool: asyncpg.Pool | None
) -> None:
    """Close the storages and the pool a run opened. A storage that fails to close is logged,
    not raised: the run's outcome is decided by then and must not be replaced."""
    for storage in storages:
        if storage is None:
            continue
        try:
            await storage.close()
        except Exception:
            log.warning("closing a storage failed", exc_info=True)
    if pool is not None:
        await pool.close()
