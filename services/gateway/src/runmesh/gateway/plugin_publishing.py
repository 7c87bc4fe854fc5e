"""Publishing and withdrawing a tenant's plugin versions (DESIGN §6).

A published archive is checked (`runmesh.plugins.archive`), stored in the platform
bucket under `plugins/<tenant>/<code>/<version>.zip`, recorded in `runs.plugins` and announced
on `runmesh.plugins` through the outbox, in one transaction: workers learn of a version only
once it is stored and recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runmesh.core.errors import PluginArchiveError
from runmesh.core.events import PluginArchive, PluginManifest
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from runmesh.gateway.outbox import enqueue
from runmesh.gateway.runs_store import DB_TIMEOUT_S
from runmesh.plugins.archive import ArchiveLimits, inspect_archive
from runmesh.storage import StorageError, platform_storage

PLUGIN_EVENT_TYPE = "plugin.manifest"

_UPSERT = """
INSERT INTO runs.plugins
    (tenant, code, version, category, builtin, manifest, announced_at, archive, deleted_at)
VALUES ($1, $2, $3, $4, false, $5, now(), $6, NULL)
ON CONFLICT (tenant, code, version) DO UPDATE SET
    category = EXCLUDED.category,
    manifest = EXCLUDED.manifest,
    announced_at = EXCLUDED.announced_at,
    archive = EXCLUDED.archive,
    deleted_at = NULL
RETURNING announced_at
"""


@dataclass(slots=True, frozen=True)
class PublishedVersion:
    """A version as publishing recorded it."""

    manifest: PluginManifest
    published_at: datetime


def archive_key(tenant: str, code: str, version: str) -> str:
    """Where a published archive lives in the platform bucket."""
    return f"plugins/{tenant}/{code}/{version}.zip"


def is_prerelease(version: str) -> bool:
    """`1.0.0-rc.1` is a pre-release; `1.0.0` and `1.0.0+build` are not."""
    return "-" in version.partition("+")[0]


async def publish(
    deps: Deps, tenant: str, data: bytes, *, force: bool, sha256: str | None
) -> PublishedVersion:
    """Check, store, record and announce an archive; `InvalidRequest` or `Conflict` if not."""
    limits = ArchiveLimits.from_settings(deps.settings.plugins)
    try:
        contents = await asyncio.to_thread(inspect_archive, data, limits)
    except PluginArchiveError as exc:
        raise InvalidRequest(f"invalid plugin archive: {exc}") from exc
    if sha256 is not None and sha256.lower() != contents.sha256:
        raise InvalidRequest(
            f"the archive's sha256 is {contents.sha256}, not the declared {sha256}: "
            "the upload was damaged or the wrong file was sent"
        )
    config = contents.config
    ref = f"{config.code}@{config.version}"
    key = archive_key(tenant, config.code, config.version)
    async with deps.pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
        await _lock_version(conn, tenant, config.code, config.version)
        await _check_publishable(conn, tenant, config.code, config.version, config.category, force)
        try:
            async with platform_storage(deps.settings.s3) as storage:
                await storage.write_bytes(key, data, media_type="application/zip")
                uri = storage.url(key)
        except StorageError as exc:
            raise ServiceUnavailable(f"could not store {ref}'s archive: {exc}") from exc
        manifest = PluginManifest(
            code=config.code,
            name=config.name,
            version=config.version,
            category=config.category,
            description=config.description,
            data_types=config.data_types,
            annotation_types=config.annotation_types,
            package_manager=config.package_manager,
            actions=contents.actions,
            service="gateway",
            worker="publish",
            tenant=tenant,
            archive=PluginArchive(uri=uri, sha256=contents.sha256, size=contents.size),
        )
        published_at: datetime = await conn.fetchval(
            _UPSERT,
            tenant,
            config.code,
            config.version,
            config.category,
            manifest.model_dump(mode="json"),
            manifest.archive.model_dump(mode="json") if manifest.archive else None,
        )
        await _announce(deps, conn, manifest)
    deps.relay.wake()
    return PublishedVersion(manifest=manifest, published_at=published_at)


async def withdraw(deps: Deps, tenant: str, code: str, version: str) -> None:
    """Mark a published version deleted (no new runs) and announce it; the archive stays for
    the runs that used it."""
    ref = f"{code}@{version}"
    async with deps.pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
        await _lock_version(conn, tenant, code, version)
        row = await conn.fetchrow(
            "SELECT manifest FROM runs.plugins WHERE tenant = $1 AND code = $2 AND version = $3"
            " AND deleted_at IS NULL",
            tenant,
            code,
            version,
        )
        if row is None:
            if await _provided_by_workers(conn, code, version):
                raise Conflict(
                    f"plugin {ref} is built in or on the workers' plugin path: remove it there; "
                    "only versions published through the API can be deleted"
                )
            raise NotFound(f"plugin version {ref} not found")
        await conn.execute(
            "UPDATE runs.plugins SET deleted_at = now() WHERE tenant = $1 AND code = $2"
            " AND version = $3",
            tenant,
            code,
            version,
        )
        manifest = PluginManifest.model_validate(_as_dict(row["manifest"]))
        await _announce(deps, conn, manifest.model_copy(update={"deleted": True}))
    deps.relay.wake()


async def _lock_version(conn: asyncpg.Connection, tenant: str, code: str, version: str) -> None:
    """Serialise publishes and deletes of one version (the S3 write sits inside them)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"plugin:{tenant}:{code}:{version}"
    )


async def _check_publishable(
    conn: asyncpg.Connection, tenant: str, code: str, version: str, category: str, force: bool
) -> None:
    ref = f"{code}@{version}"
    if await _provided_by_workers(conn, code, None):
        raise Conflict(
            f"plugin code {code!r} belongs to a plugin built into or installed on the workers; "
            "publish under another code"
        )
    other = await conn.fetchval(
        "SELECT category FROM runs.plugins WHERE tenant = $1 AND code = $2 AND category <> $3"
        " AND deleted_at IS NULL LIMIT 1",
        tenant,
        code,
        category,
    )
    if other is not None:
        raise Conflict(
            f"plugin {code!r} is published as a {other!r} plugin; {ref} says {category!r}"
        )
    exists = await conn.fetchrow(
        "SELECT deleted_at FROM runs.plugins WHERE tenant = $1 AND code = $2 AND version = $3",
        tenant,
        code,
        version,
    )
    if exists is None:
        return
    if not is_prerelease(version):
        raise Conflict(
            f"{ref} is already published{' (and deleted)' if exists['deleted_at'] else ''}: "
            "a release is immutable, publish a new version"
        )
    if not force:
        raise Conflict(
            f"{ref} is already published: publish a new version, or replace this pre-release "
            "with --force"
        )


async def _provided_by_workers(conn: asyncpg.Connection, code: str, version: str | None) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM runs.plugins WHERE tenant = '*' AND code = $1"
        " AND ($2::text IS NULL OR version = $2) LIMIT 1",
        code,
        version,
    )
    return found is not None


async def _announce(deps: Deps, conn: asyncpg.Connection, manifest: PluginManifest) -> None:
    await enqueue(
        conn,
        topic=deps.topics.plugins,
        key=f"{manifest.code}@{manifest.version}",
        message=manifest,
        event_type=PLUGIN_EVENT_TYPE,
    )


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
