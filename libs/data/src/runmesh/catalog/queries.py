"""What the catalog's data access shares: the executor type, the statement timeout, JSON as
text, and the tenant-scoped reads of one row and of a newest-first page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

# What queries run on: a connection, a pool's connection or the pool itself (asyncpg ships
# no type information, so mypy sees these as Any).
Executor: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool

TIMEOUT_S = 30.0


def to_json(value: Any) -> str:  # Any: any JSON-serialisable value
    return orjson.dumps(value).decode()


async def fetch_tenant_row(
    conn: Executor, table: str, columns: str, tenant: str, row_id: uuid.UUID | int
) -> asyncpg.Record | None:
    """The row `row_id` of `catalog.<table>` if it is the tenant's (None for another's)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {columns} FROM catalog.{table} WHERE id = $1 AND tenant = $2",
        row_id,
        tenant,
        timeout=TIMEOUT_S,
    )
    return row


async def fetch_newest_first(
    conn: Executor,
    table: str,
    columns: str,
    tenant: str,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The tenant's rows of `catalog.<table>`, newest first, after the keyset position
    `before` (created_at, id)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {columns} FROM catalog.{table}
        WHERE tenant = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $4
        """,
        tenant,
        before[0] if before else None,
        before[1] if before else None,
        limit,
        timeout=TIMEOUT_S,
    )
    return rows
