"""Versioned SQL migrations per schema, applied at start-up, once, under an advisory lock.

Each applied migration's checksum is kept beside it: a migration edited after it was applied
(its change would never reach a database that has it) and a `.sql` file whose name is not
`NNNN_description.sql` (it would never run) are errors naming the file, never skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from runmesh.core.errors import ConfigurationError

_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


class MigrationError(ConfigurationError):
    """A migration that cannot be applied as shipped: misnamed, or edited after it ran."""


@dataclass(slots=True, frozen=True)
class Migration:
    """One SQL file: `NNNN_description.sql`."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the SQL, line endings normalised (a checkout may turn them into CRLF)."""
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()


def load_migrations(package: str, directory: str = "migrations") -> list[Migration]:
    """The migrations shipped as package data in `<package>/<directory>/`, by version."""
    found: list[Migration] = []
    for entry in resources.files(package).joinpath(directory).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"{package}/{directory}/{entry.name}: a migration is named "
                "NNNN_description.sql (four digits, its version); this one would never run"
            )
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
        await conn.execute(
            f"ALTER TABLE {schema}.schema_migrations ADD COLUMN IF NOT EXISTS checksum text"
        )
        done = {
            row["version"]: row["checksum"]
            for row in await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
        }
        for migration in migrations:
            if migration.version in done:
                await _check_applied(conn, schema, migration, done[migration.version])
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name, checksum)"
                " VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied += 1
    return applied


async def _check_applied(
    conn: asyncpg.Connection, schema: str, migration: Migration, stored: str | None
) -> None:
    """An applied migration must be the file that ran; one applied before checksums were
    kept records the file as it is now."""
    if stored is None:
        await conn.execute(
            f"UPDATE {schema}.schema_migrations SET checksum = $2 WHERE version = $1",
            migration.version,
            migration.checksum,
        )
    elif stored != migration.checksum:
        raise MigrationError(
            f"{schema} migration {migration.name} was edited after it was applied (its "
            "checksum differs from the one recorded): restore it, and put the change in a "
            "new migration"
        )
