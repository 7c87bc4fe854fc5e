"""What a service action's pipeline opens for one run, before its first step, and how it is
closed again after its last."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from runmesh.catalog.tenant_storages import tenant_uris
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.settings import Settings
from runmesh.plugins import Run
from runmesh.storage import (
    Storage,
    StorageError,
    StoragePolicyError,
    TenantUris,
    open_storage,
)

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Storage)


async def open_catalog_pool(settings: Settings) -> asyncpg.Pool:
    """A small pool for one run's catalog work, with the catalog migrations applied.

    Applying them is idempotent and runs under an advisory lock: a worker may start before
    any gateway did. A published plugin's job skips them (`catalog_migrations` off): its
    worker applied them before it made the run's database role, which may not.
    """
    pool: asyncpg.Pool = await create_pool(settings.database, min_size=1, max_size=4)
    if settings.catalog_migrations:
        try:
            await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
        except BaseException:
            await pool.close()
            raise
    return pool


@dataclass(slots=True)
class RunResources:
    """What one run's pipeline works with, open before its first step: the settings, the run's
    tenant and id, a catalog pool, and whatever the action registers on `stack`.

    `open_run_resources` closes all of it once the pipeline is over, in the reverse order of
    opening. Register with `storage`, `tenant_uris` or `on_close`, which log a failure to close
    rather than raise it: by then the run's outcome is decided and must not be replaced.
    """

    settings: Settings
    tenant: str
    run_id: uuid.UUID
    pool: asyncpg.Pool
    stack: contextlib.AsyncExitStack

    def on_close(self, close: Callable[[], Awaitable[object]], what: str) -> None:
        """Call `close` when the run's resources are closed; `what` names it in the log."""
        self.stack.push_async_callback(_close_quietly, close, what)

    def storage(self, storage: S) -> S:
        """`storage`, to be closed with the run's resources."""
        self.on_close(storage.close, "a storage")
        return storage

    def tenant_storage(
        self,
        provider: str,
        config: Mapping[str, Any],
        *,
        named: str,
        failed: Callable[[str], Exception],
    ) -> Storage:
        """The tenant's storage `provider`/`config`, closed with the run's resources. A
        refusal of the operator's policy names it (`named`); any other failure to open it is
        `failed("cannot open <named>: <why>")`."""
        try:
            return self.storage(
                open_storage(provider, config, self.settings.storage, tenant=self.tenant)
            )
        except StoragePolicyError as exc:
            raise exc.naming(named) from None
        except StorageError as exc:
            raise failed(f"cannot open {named}: {exc}") from exc

    async def tenant_uris(self) -> TenantUris:
        """The tenant's storages by URI (`TenantUris`): the storages it opens on demand are
        closed with the run's resources."""
        async with self.pool.acquire(timeout=30) as conn:
            uris = await tenant_uris(conn, self.tenant, self.settings.storage)
        self.stack.push_async_callback(uris.close)  # logs a failed close itself
        return uris


def platform_settings(run: Run, action: str) -> Settings:
    """The settings `run` reaches the platform with; a RuntimeError naming `action` when it
    has none (a plugin's own tests run without)."""
    settings = run.context.settings
    if settings is None:
        raise RuntimeError(f"the {action} action needs the platform settings (run.context)")
    return settings


@contextlib.asynccontextmanager
async def open_run_resources(run: Run, settings: Settings) -> AsyncIterator[RunResources]:
    """Open the catalog pool of `run`; close it, and all registered since, when the block
    ends."""
    async with contextlib.AsyncExitStack() as stack:
        pool = await open_catalog_pool(settings)
        resources = RunResources(settings, run.context.tenant, run.run_id, pool, stack)
        resources.on_close(pool.close, "the catalog pool")
        yield resources


async def _close_quietly(close: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await close()
    except Exception:
        log.warning("closing %s failed", what, exc_info=True)
