"""Attack: published plugin code (tenant code) holds its run's database role
(runmesh.catalog.run_roles) and tries to reach beyond its tenant's catalog rows.

Two tenants have rows in every catalog data table, written by the platform's user; the code
of the first connects with its run role's DSN. It must see, write, change and delete only its
own tenant's rows, nothing of the gateway's (`runs`) or the worker's schema, nor the catalog's
bookkeeping, and it must not create or become anything.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from runmesh.catalog.run_roles import (
    GROUP,
    RunRole,
    create_run_role,
    drop_run_role,
)
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.settings import Settings

DATA_TABLES = [
    "storages",
    "data_collections",
    "data_units",
    "projects",
    "tasks",
    "assignments",
    "ground_truth_datasets",
    "ground_truth_versions",
    "ground_truth_items",
    "models",
]
OWN_ROWS, OTHER_ROWS = 2, 3  # rows per table of each tenant: different, so counts tell apart


@pytest.fixture(scope="module")
async def platform(module_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The platform's pool with every schema the platform has: the gateway's, the worker's
    and the catalog."""
    pool = await create_pool(module_settings.database, min_size=1, max_size=4)
    await apply_migrations(pool, "runs", load_migrations("runmesh.gateway"))
    await apply_migrations(pool, "worker", load_migrations("runmesh.worker"))
    await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
    yield pool
    await pool.close()


@dataclass(slots=True, frozen=True)
class World:
    own: str
    other: str
    role: RunRole
    code: asyncpg.Connection  # tenant code's session, as the run role
    own_collection: uuid.UUID


@pytest.fixture
async def world(platform: asyncpg.Pool, module_settings: Settings) -> AsyncIterator[World]:
    """Two fresh tenants with rows everywhere, and the first one's code connected."""
    assert module_settings.database_url
    own, other = (f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with platform.acquire() as conn:
        own_collection = await seed(conn, own, OWN_ROWS)
        await seed(conn, other, OTHER_ROWS)
    role = await create_run_role(
        platform,
        run_id=uuid.uuid4(),
        tenant=own,
        base_dsn=module_settings.database_url,
        valid_for_s=300,
    )
    code = await asyncpg.connect(role.dsn, timeout=10)
    try:
        yield World(own, other, role, code, own_collection)
    finally:
        await code.close()
        await drop_run_role(platform, role.name)


async def seed(conn: asyncpg.Connection, tenant: str, n: int) -> uuid.UUID:
    """`n` rows of `tenant` in every catalog data table, as the platform writes them; returns
    the first data collection's id."""
    collections = []
    for i in range(n):
        ids = [uuid.uuid4() for _ in range(6)]
        storage, collection, project, dataset, version, model = ids
        collections.append(collection)
        await conn.execute(
            "INSERT INTO catalog.storages (id, tenant, name, provider, config)"
            """ VALUES ($1, $2, $3, 'file', '{"root": "/data"}')""",
            storage,
            tenant,
            f"storage-{i}",
        )
        await conn.execute(
            "INSERT INTO catalog.data_collections (id, tenant, name, file_specifications)"
            " VALUES ($1, $2, $3, '[]')",
            collection,
            tenant,
            f"collection-{i}",
        )
        unit = await conn.fetchval(
            "INSERT INTO catalog.data_units (tenant, data_collection_id, unit_key, files)"
            " VALUES ($1, $2, $3, '{}') RETURNING id",
            tenant,
            collection,
            f"unit-{i}",
        )
        await conn.execute(
            "INSERT INTO catalog.projects"
            " (id, tenant, name, data_collection_id, annotation_type, label_schema)"
            """ VALUES ($1, $2, $3, $4, 'image_detection', '{"classes": []}')""",
            project,
            tenant,
            f"project-{i}",
            collection,
        )
        task = await conn.fetchval(
            "INSERT INTO catalog.tasks (tenant, project_id, data_unit_id) VALUES ($1, $2, $3)"
            " RETURNING id",
            tenant,
            project,
            unit,
        )
        await conn.execute(
            "INSERT INTO catalog.assignments (tenant, task_id, data) VALUES ($1, $2, '{}')",
            tenant,
            task,
        )
        await conn.execute(
            "INSERT INTO catalog.ground_truth_datasets (id, tenant, name, project_id)"
            " VALUES ($1, $2, $3, $4)",
            dataset,
            tenant,
            f"dataset-{i}",
            project,
        )
        await conn.execute(
            "INSERT INTO catalog.ground_truth_versions (id, tenant, dataset_id, version)"
            " VALUES ($1, $2, $3, 'v1')",
            version,
            tenant,
            dataset,
        )
        await conn.execute(
            "INSERT INTO catalog.ground_truth_items (tenant, version_id, data_unit_id, data)"
            " VALUES ($1, $2, $3, '{}')",
            tenant,
            version,
            unit,
        )
        await conn.execute(
            "INSERT INTO catalog.models (id, tenant, name, plugin, plugin_version, action,"
            " run_id, dataset, classes, params, metrics, artifact_uri)"
            " VALUES ($1, $2, $3, 'p', '1.0.0', 'train', $4, '{}', '[]', '{}', '{}', 's3://b/m')",
            model,
            tenant,
            f"model-{i}",
            uuid.uuid4(),
        )
    return collections[0]


async def count(conn: asyncpg.Connection | asyncpg.Pool, table: str, tenant: str) -> int:
    return int(
        await conn.fetchval(f"SELECT count(*) FROM catalog.{table} WHERE tenant = $1", tenant)
    )


# -- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("table", DATA_TABLES)
async def test_tenant_code_sees_exactly_its_tenants_rows(
    world: World, platform: asyncpg.Pool, table: str
) -> None:
    assert await count(platform, table, world.own) == OWN_ROWS
    assert await count(platform, table, world.other) == OTHER_ROWS
    # Everything it sees, unfiltered, is its own tenant's rows.
    assert await world.code.fetchval(f"SELECT count(*) FROM catalog.{table}") == OWN_ROWS
    assert await count(world.code, table, world.other) == 0


async def test_becoming_the_group_keeps_the_runs_tenant(world: World) -> None:
    """A member may SET ROLE to its group; the tenant still follows the role that logged in."""
    await world.code.execute(f"SET ROLE {GROUP}")
    assert await world.code.fetchval("SELECT catalog.current_tenant()") == world.own
    assert await world.code.fetchval("SELECT count(*) FROM catalog.storages") == OWN_ROWS


# -- writing ---------------------------------------------------------------------------------


async def test_tenant_code_inserts_only_rows_of_its_tenant(
    world: World, platform: asyncpg.Pool
) -> None:
    insert_unit = (
        "INSERT INTO catalog.data_units (tenant, data_collection_id, unit_key, files)"
        " VALUES ($1, $2, $3, '{}') RETURNING id"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await world.code.fetchval(insert_unit, world.other, world.own_collection, "planted")
    # Its own tenant's row goes in, its id from the table's sequence.
    unit = await world.code.fetchval(insert_unit, world.own, world.own_collection, "new")
    assert await platform.fetchval("SELECT tenant FROM catalog.data_units WHERE id = $1", unit) == (
        world.own
    )
    # Nor can it claim another tenant by recording its role under that tenant.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await world.code.execute(
            "UPDATE catalog.run_roles SET tenant = $1 WHERE role_name = current_user", world.other
        )


async def test_tenant_code_cannot_change_or_delete_another_tenants_rows(
    world: World, platform: asyncpg.Pool
) -> None:
    code = world.code
    assert await code.execute(
        "UPDATE catalog.storages SET name = 'mine' WHERE tenant = $1", world.other
    ) == ("UPDATE 0")
    assert await code.execute("UPDATE catalog.tasks SET status = 'skipped'") == "UPDATE 2"
    assert await code.execute("DELETE FROM catalog.assignments") == f"DELETE {OWN_ROWS}"
    assert await code.execute("DELETE FROM catalog.models WHERE tenant = $1", world.other) == (
        "DELETE 0"
    )
    # Moving its own row to another tenant is refused by the policy's check.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await code.execute("UPDATE catalog.storages SET tenant = $1", world.other)
    # TRUNCATE would ignore row-level security; it is not granted, nor is setval.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await code.execute("TRUNCATE catalog.assignments")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await code.execute("SELECT setval('catalog.tasks_id_seq', 1)")

    assert await count(platform, "assignments", world.other) == OTHER_ROWS
    assert await count(platform, "models", world.other) == OTHER_ROWS
    assert await platform.fetchval(
        "SELECT count(*) FROM catalog.tasks WHERE tenant = $1 AND status = 'skipped'", world.other
    ) == (0)


# -- the platform's own ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "table",
    [
        "runs.runs",
        "runs.api_tokens",
        "runs.plugins",
        "runs.outbox",
        "worker.run_attempts",
        "catalog.run_roles",
        "catalog.schema_migrations",
    ],
)
async def test_the_platforms_tables_are_refused(world: World, table: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await world.code.fetch(f"SELECT * FROM {table} LIMIT 1")


async def test_tenant_code_cannot_create_or_become_anything(
    world: World, platform: asyncpg.Pool
) -> None:
    platform_user = await platform.fetchval("SELECT quote_ident(current_user)")
    refused = [
        "CREATE TABLE catalog.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE SCHEMA mine",
        "CREATE ROLE mine",
        "CREATE DATABASE mine",
        f"SET ROLE {platform_user}",
        f"ALTER ROLE {world.role.name} CREATEROLE",
        f"ALTER ROLE {world.role.name} BYPASSRLS",
        f"GRANT {GROUP} TO {world.role.name} WITH ADMIN OPTION",
        "ALTER TABLE catalog.storages DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_code ON catalog.storages",
        "CREATE OR REPLACE FUNCTION catalog.current_tenant() RETURNS text"
        " LANGUAGE sql AS $$ SELECT 'x' $$",
    ]
    for statement in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await world.code.execute(statement)
        assert await world.code.fetchval("SELECT catalog.current_tenant()") == world.own


async def test_a_run_role_has_few_sessions(world: World) -> None:
    """The connection limit (4 by default) bounds what one run holds of the server's."""
    more = [await asyncpg.connect(world.role.dsn, timeout=10) for _ in range(3)]
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(world.role.dsn, timeout=10)
    finally:
        for conn in more:
            await conn.close()
