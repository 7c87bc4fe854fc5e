"""Run roles (runmesh.catalog.run_roles) on the sandbox's PostgreSQL: their DSN, their
attributes, how they are dropped, and the row-level security every catalog table must have.

What such a role may and may not reach is attacked in tests/security/test_tenant_code_catalog.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from runmesh.catalog.errors import RunRoleError
from runmesh.catalog.run_roles import (
    GROUP,
    RunRole,
    create_run_role,
    drop_expired_run_roles,
    drop_run_role,
    role_dsn,
)
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.errors import ConfigurationError
from runmesh.core.settings import Settings

# The only catalog tables tenant code must not reach.
PLATFORM_TABLES = {"schema_migrations", "run_roles"}


@pytest.fixture(scope="module")
async def platform(module_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The platform's pool (the sandbox's user) with the catalog migrations applied."""
    pool = await create_pool(module_settings.database, min_size=1, max_size=4)
    await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
    yield pool
    await pool.close()


@pytest.fixture
async def roles(platform: asyncpg.Pool) -> AsyncIterator[list[RunRole]]:
    """The run roles a test creates (append them); whatever is left is dropped after it."""
    created: list[RunRole] = []
    yield created
    for role in created:
        await drop_run_role(platform, role.name)


async def new_role(
    platform: asyncpg.Pool, settings: Settings, roles: list[RunRole], **kw: float
) -> RunRole:
    assert settings.database_url
    role = await create_run_role(
        platform,
        run_id=uuid.uuid4(),
        tenant=f"tenant-{uuid.uuid4().hex[:8]}",
        base_dsn=settings.database_url,
        valid_for_s=kw.get("valid_for_s", 600),
    )
    roles.append(role)
    return role


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=10)


async def role_exists(platform: asyncpg.Pool, name: str) -> bool:
    return bool(await platform.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", name))


async def recorded(platform: asyncpg.Pool, name: str) -> bool:
    count = await platform.fetchval(
        "SELECT count(*) FROM catalog.run_roles WHERE role_name = $1", name
    )
    return bool(count)


# -- the DSN ---------------------------------------------------------------------------------


def test_the_role_dsn_keeps_the_server_and_replaces_the_credentials() -> None:
    dsn = role_dsn(
        "postgresql://platform:s3cr%40t@db.internal:6543/runmesh?sslmode=require"
        "&user=platform&password=other&application_name=w",
        "rm_run_ab_cd",
        "p-w_d",
    )
    parts = urlsplit(dsn)
    assert (parts.username, parts.password) == ("rm_run_ab_cd", "p-w_d")
    assert (parts.hostname, parts.port, parts.path) == ("db.internal", 6543, "/runmesh")
    assert parts.query == "sslmode=require&application_name=w"
    assert "s3cr" not in dsn and "other" not in dsn


def test_the_role_dsn_quotes_and_keeps_several_hosts() -> None:
    dsn = role_dsn("postgres://a@[::1]:5432,h2:5433/db", "u", "p@ss/:?")
    assert dsn == "postgres://u:p%40ss%2F%3A%3F@[::1]:5432,h2:5433/db"
    with pytest.raises(ConfigurationError, match="postgresql://"):
        role_dsn("host=db dbname=runmesh", "u", "p")


# -- the schema ------------------------------------------------------------------------------


async def test_every_catalog_table_has_row_level_security_for_tenant_code(
    platform: asyncpg.Pool,
) -> None:
    """A migration that adds a catalog table must enable row-level security on it and give it
    a policy for the group, or tenant code could not be let near it safely."""
    tables = await platform.fetch(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (
                   SELECT FROM pg_policy AS p
                   WHERE p.polrelid = c.oid AND $1::regrole = ANY (p.polroles)
               ) AS has_policy
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'catalog' AND c.relkind IN ('r', 'p')
        """,
        GROUP,
    )
    data_tables = [row for row in tables if row["relname"] not in PLATFORM_TABLES]
    assert len(data_tables) >= 10
    missing = [row["relname"] for row in data_tables if not row["relrowsecurity"]]
    assert not missing, f"catalog tables without row-level security: {missing}"
    missing = [row["relname"] for row in data_tables if not row["has_policy"]]
    assert not missing, f"catalog tables without a policy for {GROUP}: {missing}"
    # FORCE would subject the platform's own queries (the owner's) to the policies.
    assert not [row["relname"] for row in tables if row["relforcerowsecurity"]]


async def test_the_group_is_granted_the_catalog_data_tables_only(platform: asyncpg.Pool) -> None:
    grants = await platform.fetch(
        "SELECT table_schema, table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = $1",
        GROUP,
    )
    assert {row["table_schema"] for row in grants} == {"catalog"}
    assert not {row["table_name"] for row in grants} & PLATFORM_TABLES
    assert {row["privilege_type"] for row in grants} == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    functions = await platform.fetch(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'catalog' AND has_function_privilege($1, p.oid, 'EXECUTE')",
        GROUP,
    )
    assert [row["proname"] for row in functions] == ["current_tenant"]
    group = await platform.fetchrow("SELECT * FROM pg_roles WHERE rolname = $1", GROUP)
    assert not group["rolcanlogin"] and not group["rolsuper"] and not group["rolbypassrls"]


async def test_the_migration_runs_again_in_another_database_of_the_cluster(
    platform: asyncpg.Pool, module_settings: Settings
) -> None:
    """The group is cluster-wide and exists already: a second database's migration keeps it."""
    assert module_settings.database_url
    name = f"rr_{uuid.uuid4().hex[:12]}"
    await platform.execute(f"CREATE DATABASE {name}")
    try:
        other = await asyncpg.create_pool(
            urlunsplit(urlsplit(module_settings.database_url)._replace(path=f"/{name}")),
            min_size=1,
            max_size=1,
        )
        try:
            assert await apply_migrations(
                other, "catalog", load_migrations("runmesh.catalog")
            ) == len(load_migrations("runmesh.catalog"))
        finally:
            await other.close()
    finally:
        await platform.execute(f"DROP DATABASE {name} WITH (FORCE)")


# -- creating --------------------------------------------------------------------------------


async def test_a_run_role_is_recorded_and_has_no_power_of_its_own(
    platform: asyncpg.Pool, module_settings: Settings, roles: list[RunRole]
) -> None:
    assert module_settings.database_url
    run_id = uuid.uuid4()
    first, second = [
        await create_run_role(
            platform,
            run_id=run_id,
            tenant="acme",
            base_dsn=module_settings.database_url,
            valid_for_s=120,
            connection_limit=2,
        )
        for _ in range(2)
    ]
    roles.extend([first, second])
    # A second attempt of the same run gets a role of its own.
    assert first.name != second.name
    assert first.name.startswith(f"rm_run_{run_id.hex}_")
    assert first.dsn not in repr(first)
    row = await platform.fetchrow(
        "SELECT tenant, run_id, expires_at, expires_at - created_at AS valid_for"
        " FROM catalog.run_roles"
        " WHERE role_name = $1",
        first.name,
    )
    assert (row["tenant"], row["run_id"]) == ("acme", run_id)
    assert row["valid_for"].total_seconds() == pytest.approx(120, abs=1)
    role = await platform.fetchrow(
        "SELECT *, pg_has_role(rolname, $2, 'USAGE') AS in_group FROM pg_roles WHERE rolname = $1",
        first.name,
        GROUP,
    )
    assert role["rolcanlogin"] and role["rolinherit"] and role["in_group"]
    assert role["rolconnlimit"] == 2 and role["rolvaliduntil"] == row["expires_at"]
    for power in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"):
        assert not role[power], power
    # The server got a SCRAM verifier, never the password.
    secret = await platform.fetchval(
        "SELECT rolpassword FROM pg_authid WHERE rolname = $1", first.name
    )
    assert secret.startswith("SCRAM-SHA-256$4096:")
    password = urlsplit(first.dsn).password
    assert password and password not in secret

    conn = await connect(first.dsn)
    try:
        assert await conn.fetchval("SELECT catalog.current_tenant()") == "acme"
    finally:
        await conn.close()


async def test_a_user_without_createrole_gets_the_grant_to_ask_for(
    platform: asyncpg.Pool, module_settings: Settings
) -> None:
    assert module_settings.database_url
    user, password = f"noroles_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await platform.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    try:
        weak_dsn = role_dsn(module_settings.database_url, user, password)
        weak = await asyncpg.create_pool(weak_dsn, min_size=1, max_size=1)
        try:
            with pytest.raises(RunRoleError, match=f"ALTER ROLE {user} CREATEROLE"):
                await create_run_role(
                    weak,
                    run_id=uuid.uuid4(),
                    tenant="acme",
                    base_dsn=module_settings.database_url,
                    valid_for_s=60,
                )
        finally:
            await weak.close()
    finally:
        await platform.execute(f"DROP ROLE {user}")


# -- dropping --------------------------------------------------------------------------------


async def test_dropping_a_role_ends_its_sessions_and_its_logins(
    platform: asyncpg.Pool, module_settings: Settings, roles: list[RunRole]
) -> None:
    role = await new_role(platform, module_settings, roles)
    job = await connect(role.dsn)
    # What tenant code may create, and which would otherwise keep the role from being dropped.
    await job.execute("CREATE TEMP TABLE scratch (x int)")
    await job.fetchval("SELECT lo_create(0)")
    await job.execute("BEGIN")
    await job.fetchval("SELECT count(*) FROM catalog.storages")

    await drop_run_role(platform, role.name)

    with pytest.raises((asyncpg.AdminShutdownError, asyncpg.InterfaceError, ConnectionError)):
        await job.fetchval("SELECT 1")
    await job.close()
    # Password authentication says the password is wrong, trust authentication that the role
    # does not exist: both are authorization errors.
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await connect(role.dsn)
    assert not await role_exists(platform, role.name)
    assert not await recorded(platform, role.name)
    # Dropping again (the worker and the sweeper may both try) is harmless.
    await drop_run_role(platform, role.name)


async def test_only_run_roles_are_dropped(platform: asyncpg.Pool) -> None:
    user = await platform.fetchval("SELECT current_user")
    with pytest.raises(RunRoleError, match="not the name of a run role"):
        await drop_run_role(platform, user)
    with pytest.raises(RunRoleError):
        await drop_run_role(platform, f"rm_run_{uuid.uuid4().hex}_0000000g")


async def test_a_role_that_owns_objects_elsewhere_is_disarmed_and_kept_for_later(
    platform: asyncpg.Pool, module_settings: Settings, roles: list[RunRole]
) -> None:
    """Roles are cluster-wide: tenant code may connect to another database (CONNECT is
    PUBLIC's by default) and leave a large object there, which only that database can drop."""
    role = await new_role(platform, module_settings, roles)
    name = f"rr_{uuid.uuid4().hex[:12]}"
    await platform.execute(f"CREATE DATABASE {name}")
    try:
        job = await connect(urlunsplit(urlsplit(role.dsn)._replace(path=f"/{name}")))
        await job.fetchval("SELECT lo_create(0)")
        await job.close()
        with pytest.raises(RunRoleError, match="another database"):
            await drop_run_role(platform, role.name)
        state = await platform.fetchrow(
            "SELECT rolcanlogin, pg_has_role(rolname, $2, 'MEMBER') AS in_group FROM pg_roles"
            " WHERE rolname = $1",
            role.name,
            GROUP,
        )
        assert (state["rolcanlogin"], state["in_group"]) == (False, False)
        assert await recorded(platform, role.name)
    finally:
        await platform.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await drop_run_role(platform, role.name)
    assert not await role_exists(platform, role.name)


async def test_expired_roles_are_dropped_live_ones_kept(
    platform: asyncpg.Pool, module_settings: Settings, roles: list[RunRole]
) -> None:
    live = await new_role(platform, module_settings, roles)
    expired = await new_role(platform, module_settings, roles, valid_for_s=0.001)
    job = await connect(live.dsn)
    try:
        assert await drop_expired_run_roles(platform) >= 1
        assert not await role_exists(platform, expired.name)
        assert not await recorded(platform, expired.name)
        assert await role_exists(platform, live.name) and await recorded(platform, live.name)
        assert await job.fetchval("SELECT catalog.current_tenant()") is not None
    finally:
        await job.close()
