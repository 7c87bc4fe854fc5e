"""The sandbox's PostgreSQL asks for a password, and converts a data dir made with trust auth."""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from runmesh.sandbox import EmbeddedPostgres, SandboxError

# What `initdb --auth=trust` writes (comments aside), as older runmesh versions did.
TRUST_HBA = """\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
"""
SWITCHED = "switched from trust to password auth"


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def no_client_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep libpq's environment and ~/.pgpass from supplying a password behind the test."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))


async def fetchval(dsn: str, query: str) -> object:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await connection.fetchval(query, timeout=10)
    finally:
        await connection.close(timeout=5)


def superuser_dsn(postgres: EmbeddedPostgres, password: str | None) -> str:
    secret = "" if password is None else f":{password}"
    return f"postgresql://postgres{secret}@127.0.0.1:{postgres.port}/postgres"


async def assert_refused(postgres: EmbeddedPostgres) -> None:
    for password in (None, "not-the-password"):
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await fetchval(superuser_dsn(postgres, password), "select 1")


async def test_postgres_refuses_the_superuser_without_the_password(
    postgres: EmbeddedPostgres,
) -> None:
    await postgres.start()

    await assert_refused(postgres)
    assert await fetchval(postgres.dsn, "select current_user") == "postgres"
    mode = postgres.password_path.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    password = postgres.password_path.read_text().strip()
    assert postgres.dsn == superuser_dsn(postgres, password)
    assert not list(postgres.data_dir.glob(".initdb-password-*"))


async def test_the_password_is_kept_across_restarts(postgres: EmbeddedPostgres) -> None:
    await postgres.start()
    dsn = postgres.dsn
    await postgres.stop()

    await postgres.start()

    assert postgres.dsn == dsn
    assert await fetchval(dsn, "select 1") == 1


async def test_a_trust_data_dir_switches_to_passwords_and_keeps_its_data(
    postgres: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    await postgres.start()
    await fetchval(postgres.dsn, "create table kept as select 42 as answer")
    await postgres.stop()
    # What an older runmesh left behind: trust auth and no password file.
    (postgres.pgdata / "pg_hba.conf").write_text(TRUST_HBA)
    postgres.password_path.unlink()

    with caplog.at_level(logging.INFO, logger="runmesh.sandbox"):
        await postgres.start()

    assert caplog.text.count(SWITCHED) == 1
    await assert_refused(postgres)
    assert await fetchval(postgres.dsn, "select answer from kept") == 42
    hba = (postgres.pgdata / "pg_hba.conf").read_text()
    assert "trust" not in hba
    assert "127.0.0.1/32" in hba
    assert "::1/128" in hba

    await postgres.stop()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="runmesh.sandbox"):
        await postgres.start()
    assert SWITCHED not in caplog.text
    assert await fetchval(postgres.dsn, "select answer from kept") == 42


async def test_a_lost_password_file_is_one_clear_error(postgres: EmbeddedPostgres) -> None:
    await postgres.start()
    await postgres.stop()
    postgres.password_path.unlink()

    with pytest.raises(SandboxError, match="remove the data directory"):
        await postgres.start()

    assert not postgres.running


async def test_a_wrong_password_file_fails_fast(postgres: EmbeddedPostgres) -> None:
    await postgres.start()
    await postgres.stop()
    postgres.password_path.write_text("not-the-password\n")

    with pytest.raises(SandboxError, match="refuses the password"):
        await postgres.start()

    assert not postgres.running
