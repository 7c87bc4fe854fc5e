"""Migrations against a real PostgreSQL: applied once, their checksums kept; an applied one
edited afterwards, or a misnamed file, is an error naming the file instead of being skipped."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from runmesh.core.db import MigrationError, apply_migrations, create_pool, load_migrations
from runmesh.core.settings import Settings


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    db = await create_pool(settings.database, min_size=1, max_size=2)
    yield db
    await db.close()


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An importable package with an empty `migrations/` folder: (its name, the folder)."""
    name = f"migs_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name / "migrations"
    folder.mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return name, folder


async def test_applied_once_and_an_edited_one_is_refused(
    pool: asyncpg.Pool, package: tuple[str, Path]
) -> None:
    name, folder = package
    schema = f"m_{uuid.uuid4().hex[:8]}"
    (folder / "0001_things.sql").write_text(f"CREATE TABLE {schema}.things (id int);\n")
    (folder / "README.md").write_text("not a migration\n")
    assert await apply_migrations(pool, schema, load_migrations(name)) == 1
    assert await apply_migrations(pool, schema, load_migrations(name)) == 0
    (folder / "0002_more.sql").write_text(f"ALTER TABLE {schema}.things ADD COLUMN n int;\n")
    assert await apply_migrations(pool, schema, load_migrations(name)) == 1

    (folder / "0001_things.sql").write_text(f"CREATE TABLE {schema}.things (id bigint);\n")
    with pytest.raises(MigrationError, match=r"0001_things\.sql was edited after it was applied"):
        await apply_migrations(pool, schema, load_migrations(name))
    # Line endings alone are no edit.
    (folder / "0001_things.sql").write_bytes(f"CREATE TABLE {schema}.things (id int);\r\n".encode())
    assert await apply_migrations(pool, schema, load_migrations(name)) == 0
    await pool.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_a_migration_applied_before_checksums_records_its_file(
    pool: asyncpg.Pool, package: tuple[str, Path]
) -> None:
    name, folder = package
    schema = f"m_{uuid.uuid4().hex[:8]}"
    (folder / "0001_things.sql").write_text(f"CREATE TABLE {schema}.things (id int);\n")
    await apply_migrations(pool, schema, load_migrations(name))
    await pool.execute(f"UPDATE {schema}.schema_migrations SET checksum = NULL")
    assert await apply_migrations(pool, schema, load_migrations(name)) == 0
    assert await pool.fetchval(f"SELECT checksum FROM {schema}.schema_migrations") == (
        load_migrations(name)[0].checksum
    )
    await pool.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("file", ["1_things.sql", "0001-things.sql", "things.sql", "0001_.sql"])
def test_a_misnamed_sql_file_is_an_error_naming_it(package: tuple[str, Path], file: str) -> None:
    name, folder = package
    (folder / file).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=file.replace(".", r"\.")):
        load_migrations(name)


def test_the_shipped_migrations_are_all_well_named() -> None:
    for package in ("runmesh.catalog", "runmesh.worker"):
        assert load_migrations(package)
