"""Versioned SQL migrations per schema, applied at start-up, once, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from runmesh.common.errors import ConfigurationError

_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


@dataclass(slots=True, frozen=True)
class Migration:
    """One SQL file: `NNNN_description.sql`."""

    version: int
    name: str
    sql: str


def load_migrations(package: str, directory: str = "migrations") -> list[Migration]:
    """The migrations shipped as package data in `<package>/<directory>/`, by version."""
    found: list[Migration] = []
    for entry in resources.files(package).joinpath(directory).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError(f"{package}/{directory}: two migrations share a version")
    return found


async def apply_migrations(pool: asyncpg.Pool, schema: str, migrations: list[Migration]) -> int:
    """Apply the migrations of `schema` not applied yet; return how many ran.

    Replicas start together: an advisory lock per schema makes one of them migrate while the
    others wait, then find nothing left to do.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ConfigurationError(f"invalid schema name {schema!r}")
    lock_key = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    applied = 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
        }
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied += 1
    return applied
