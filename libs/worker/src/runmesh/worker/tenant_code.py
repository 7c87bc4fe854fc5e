"""What a worker sets up for a run of a tenant's published code, and takes down after it.

The job gets no credential of the platform's (docs/security.md, "Tenant code"):
- its settings carry none (`Settings.for_tenant_code`), only the DSN of a database role made
  for this run, which sees the catalog rows of the run's tenant and nothing else;
- its storages are opened here, by the worker, after the tenant and policy checks, and
  reached through the job's pipe (`StorageBroker`);
- it confines itself (`Confinement`) to its plugin, its scratch directory and the catalog's
  port before it imports the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from runmesh.catalog.errors import RunRoleError
from runmesh.catalog.run_roles import (
    create_run_role,
    drop_expired_run_roles,
    drop_run_role,
)
from runmesh.core.db import apply_migrations, load_migrations
from runmesh.core.settings import Settings
from runmesh.execution.confinement import Confinement
from runmesh.storage.broker import StorageBroker

log = logging.getLogger(__name__)

_ROLE_CONNECTIONS = 8  # a run's pipeline opens one small pool (at most 4) and a spare or two
_ROLE_MARGIN_S = 3600.0  # a role outlives its run's deadline by this much, then expires
_DEFAULT_ROLE_LIFETIME_S = 7 * 24 * 3600.0  # for a run without a timeout


@dataclass(slots=True, frozen=True)
class TenantCodeAccess:
    """What one run of tenant code gets: settings without credentials, how its job is
    confined (None: RUNMESH_JOB_SANDBOX=off) and the broker serving its storage calls."""

    settings: Settings
    confinement: Confinement | None
    broker: StorageBroker


class TenantCodeGuard:
    """Prepares the runs of tenant code of one worker (`pool`: the worker's own database)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _prepare(self) -> None:
        """Once per worker: the catalog's migrations (the run roles and their row-level
        security live there) and the roles a dead worker left behind."""
        async with self._ready_lock:
            if self._ready:
                return
            await apply_migrations(self._pool, "catalog", load_migrations("runmesh.catalog"))
            dropped = await drop_expired_run_roles(self._pool)
            if dropped:
                log.info("dropped %d expired run roles", dropped)
            self._ready = True

    @contextlib.asynccontextmanager
    async def access(
        self, run_id: uuid.UUID, tenant: str, plugin_dir: Path, timeout_s: float | None
    ) -> AsyncIterator[TenantCodeAccess]:
        """The run's access (RunRoleError when the database refuses to make its role),
        taken back when the block ends, however it ends."""
        await self._prepare()
        settings = self._settings
        if settings.database_url is None:
            raise RuntimeError("a worker without RUNMESH_DATABASE_URL runs no tenant code")
        lifetime = (timeout_s or _DEFAULT_ROLE_LIFETIME_S) + _ROLE_MARGIN_S
        role = await create_run_role(
            self._pool,
            run_id=run_id,
            tenant=tenant,
            base_dsn=settings.database_url,
            valid_for_s=lifetime,
            connection_limit=_ROLE_CONNECTIONS,
        )
        broker = StorageBroker(tenant, settings)
        scratch: str | None = None
        try:
            scratch = await asyncio.to_thread(tempfile.mkdtemp, prefix=f"runmesh-job-{run_id}-")
            confinement = None
            if settings.job_sandbox == "landlock":
                confinement = Confinement(
                    plugin_dir=str(plugin_dir),
                    scratch_dir=scratch,
                    tcp_ports=_ports(role.dsn) if settings.job_network == "catalog" else None,
                    hidden=_hidden_dirs(settings),
                )
            job_settings = settings.for_tenant_code(role.dsn)
            if confinement is not None and confinement.tcp_ports is not None:
                # The collector is out of the job's reach: exporting would only retry in vain
                # at the job's end. The worker's span of the run is exported as always.
                job_settings = job_settings.model_copy(update={"otel_exporter_otlp_endpoint": None})
            yield TenantCodeAccess(job_settings, confinement, broker)
        finally:
            await broker.close()
            if scratch is not None:
                await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
            try:
                await drop_run_role(self._pool, role.name)
            except (OSError, TimeoutError, asyncpg.PostgresError, RunRoleError):
                # The run's outcome stands; the role expires, and the sweeper drops it.
                log.warning("could not drop run role %s", role.name, exc_info=True)


def _ports(dsn: str) -> tuple[int, ...]:
    """The TCP ports of the hosts in a PostgreSQL DSN (libpq's default 5432 where none)."""
    hosts = urlsplit(dsn).netloc.rpartition("@")[2]
    ports = set()
    for host in hosts.split(","):
        _, colon, port = host.rpartition(":")
        ports.add(int(port) if colon and port.isdigit() and "]" not in port else 5432)
    return tuple(sorted(ports))


def _hidden_dirs(settings: Settings) -> tuple[str, ...]:
    """Directories of the worker's that a job's rules may never cover."""
    paths = [settings.home, settings.plugin_cache_dir]
    if settings.sandbox_dir is not None:
        paths.append(settings.sandbox_dir)
    return tuple(str(path.expanduser().resolve()) for path in paths)
