"""Per-run PostgreSQL login roles through which published plugin code reaches the catalog.

A worker creates one for each run of tenant code (`create_run_role`) and hands the job the
role's DSN instead of the platform's: the role is a member of `runmesh_tenant_code`, which
may use the catalog's data tables only, and row-level security admits only the rows of the
run's tenant (migration 0004). The worker drops the role when the run ends
(`drop_run_role`); `drop_expired_run_roles` removes those a dead worker left behind.

The platform's database user needs CREATEROLE for this (and, on PostgreSQL 16 and later,
ADMIN OPTION on `runmesh_tenant_code`, which it has when its own migration created the group).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

from runmesh.catalog.errors import RunRoleError
from runmesh.core.errors import ConfigurationError

log = logging.getLogger(__name__)

GROUP = "runmesh_tenant_code"
"""The role every run role is a member of; migration 0004 grants it the catalog's tables."""

_TIMEOUT_S = 30.0
# How long dropping a role waits for each of its sessions to end before dropping what they
# own: a session's temporary tables go away only when its backend has exited.
_TERMINATE_WAIT_MS = 5000
_NAME = re.compile(r"rm_run_[0-9a-f]{32}_[0-9a-f]{8}")
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
# Query parameters that would override the user or password of the DSN's authority part.
_CREDENTIAL_PARAMS = frozenset({"user", "password", "passfile"})


@dataclass(slots=True, frozen=True)
class RunRole:
    """A run's login role: `name` (`rm_run_<run id hex>_<random>`) and `dsn`, the platform's
    DSN with this role as user and its password; the password is nowhere else, and the DSN
    is kept out of `repr` so that logging a `RunRole` does not log it."""

    name: str
    dsn: str = field(repr=False)


async def create_run_role(
    pool: asyncpg.Pool,
    *,
    run_id: uuid.UUID,
    tenant: str,
    base_dsn: str,
    valid_for_s: float,
    connection_limit: int = 4,
) -> RunRole:
    """Create a login role for one run of tenant code and record it in `catalog.run_roles`.

    Args:
        pool: the platform's pool on the catalog's database (its user needs CREATEROLE).
        run_id: the run; a second attempt of the same run gets a role of its own.
        tenant: the only tenant whose catalog rows the role sees and writes.
        base_dsn: the platform's `postgresql://` DSN; the role's keeps its host, port,
            database and query parameters.
        valid_for_s: the role's password stops working this many seconds from now (its
            `VALID UNTIL`, enforced by password authentication), and `drop_expired_run_roles`
            drops it from then on: give the run's deadline plus a margin.
        connection_limit: how many sessions the role may have at once.

    Raises `RunRoleError` when the platform's user may not create the role, with the grant
    an operator must give, and `ConfigurationError` for a `base_dsn` that is not a URL.
    """
    if not math.isfinite(valid_for_s) or valid_for_s <= 0:
        raise ValueError(f"valid_for_s must be a positive number of seconds, not {valid_for_s}")
    if connection_limit < 1:
        raise ValueError(f"connection_limit must be at least 1, not {connection_limit}")
    # Hex and a short random suffix: a valid identifier without quoting, under PostgreSQL's
    # 63-byte limit, and unique per attempt.
    name = f"rm_run_{run_id.hex}_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(32)
    dsn = role_dsn(base_dsn, name, password)
    # The server gets the SCRAM verifier, never the password: CREATE ROLE's text can end up
    # in the server log (log_statement) or pg_stat_statements.
    verifier = await asyncio.to_thread(_scram_verifier, password)
    async with pool.acquire(timeout=_TIMEOUT_S) as conn:
        try:
            async with conn.transaction():
                expires_at = await conn.fetchval(
                    "SELECT now() + make_interval(secs => $1)", valid_for_s, timeout=_TIMEOUT_S
                )
                # INHERIT: the role acts with the group's privileges without a SET ROLE. The
                # other attributes are PostgreSQL's defaults, spelled out for whoever reads
                # pg_roles.
                await _ddl(
                    conn,
                    "CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE"
                    " NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %s PASSWORD %L VALID UNTIL %L"
                    f" IN ROLE {GROUP}",
                    name,
                    connection_limit,
                    verifier,
                    expires_at,
                )
                # Since PostgreSQL 16 the creator of a role holds ADMIN OPTION on it but not
                # its privileges, which ending its sessions (pg_terminate_backend) and
                # dropping what it owns (DROP OWNED) need; membership gives them. It gives
                # the platform nothing it lacks: it owns every table the group may use.
                await _ddl(conn, "GRANT %I TO CURRENT_USER", name)
                await conn.execute(
                    "INSERT INTO catalog.run_roles (role_name, tenant, run_id, expires_at)"
                    " VALUES ($1, $2, $3, $4)",
                    name,
                    tenant,
                    run_id,
                    expires_at,
                    timeout=_TIMEOUT_S,
                )
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RunRoleError(await _privilege_message(conn, f"create role {name}")) from exc
    return RunRole(name=name, dsn=dsn)


async def drop_run_role(pool: asyncpg.Pool, name: str) -> None:
    """End the sessions of the run role `name`, drop it and its `catalog.run_roles` row.

    Works while the run's job is still connected: the role first loses its login and its
    membership of the group (so that, whatever happens next, it can no longer reach the
    catalog), then its sessions are terminated, then what it created in this database
    (large objects, say) is dropped with it. Dropping a role that no longer exists only
    removes its row.

    Raises `RunRoleError` for a name that is not a run role's (this never drops another
    role), when the platform's user lacks a privilege it needs, or when the role owns
    objects in another database of the cluster; the role is disarmed by then and its row kept,
    so `drop_expired_run_roles` tries again.
    """
    if not _NAME.fullmatch(name):
        raise RunRoleError(f"{name!r} is not the name of a run role (rm_run_<hex>_<hex>)")
    async with pool.acquire(timeout=_TIMEOUT_S) as conn:
        try:
            await _drop(conn, name)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RunRoleError(await _privilege_message(conn, f"drop role {name}")) from exc
        except asyncpg.DependentObjectsStillExistError as exc:
            raise RunRoleError(
                f"role {name} cannot be dropped, it still owns objects in another database of"
                f" the cluster (its login and catalog access are revoked): {exc}"
            ) from exc


async def drop_expired_run_roles(pool: asyncpg.Pool, *, limit: int = 1000) -> int:
    """Drop the run roles whose `expires_at` has passed (their worker died before dropping
    them), at most `limit` of them; return how many were dropped. A role that cannot be
    dropped is logged and left for the next call.

    Only the roles recorded in this database's `catalog.run_roles` are considered: another
    database of the same cluster sweeps its own.
    """
    rows = await pool.fetch(
        "SELECT role_name FROM catalog.run_roles WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT $1",
        limit,
        timeout=_TIMEOUT_S,
    )
    dropped = 0
    for row in rows:
        try:
            await drop_run_role(pool, row["role_name"])
        except RunRoleError:
            log.warning("could not drop expired run role %s", row["role_name"], exc_info=True)
        else:
            dropped += 1
    return dropped


def role_dsn(base_dsn: str, user: str, password: str) -> str:
    """`base_dsn` (a `postgresql://` URL) with `user` and `password` in place of its own: the
    host(s), port, database and query parameters are kept, except those naming credentials
    (`user`, `password`, `passfile`), which would override the new ones."""
    parts = urlsplit(base_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            "the platform's database URL must be a postgresql:// URL to derive a run role's"
            f" DSN from it, not {parts.scheme or 'a key=value string'!r}"
        )
    # What follows the last "@" is the host list, whatever the old credentials contain.
    hosts = parts.netloc.rpartition("@")[2]
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in _CREDENTIAL_PARAMS
    ]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


async def _drop(conn: asyncpg.Connection, name: str) -> None:
    oid = await conn.fetchval(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1", name, timeout=_TIMEOUT_S
    )
    if oid is not None:
        # Disarm first, committed on its own: should a later step fail, the role can neither
        # log in again nor use the group's privileges from a session still open.
        async with conn.transaction():
            await _ddl(conn, "ALTER ROLE %I NOLOGIN", name)
            await _ddl(conn, f"REVOKE {GROUP} FROM %I", name)
        # By oid: pg_stat_activity's usename is already gone once the role is. Waiting for
        # each backend to exit lets it remove its temporary tables, which DROP OWNED and DROP
        # ROLE would otherwise trip over.
        await conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid, $2) FROM pg_catalog.pg_stat_activity"
            " WHERE usesysid = $1 AND pid <> pg_catalog.pg_backend_pid()",
            oid,
            _TERMINATE_WAIT_MS,
            timeout=_TIMEOUT_S,
        )
    async with conn.transaction():
        if oid is not None:
            try:
                async with conn.transaction():  # a savepoint: a concurrent drop may have won
                    await _ddl(conn, "DROP OWNED BY %I", name)
            except asyncpg.UndefinedObjectError:
                pass
            await _ddl(conn, "DROP ROLE IF EXISTS %I", name)
        await conn.execute(
            "DELETE FROM catalog.run_roles WHERE role_name = $1", name, timeout=_TIMEOUT_S
        )


async def _ddl(conn: asyncpg.Connection, template: str, *args: object) -> None:
    """Run the statement `format(template, args...)`: role names and passwords cannot be
    bind parameters, so the server quotes them (%I, %L) and the result is executed."""
    placeholders = "".join(f", ${i}::text" for i in range(2, len(args) + 2))
    statement = await conn.fetchval(
        f"SELECT pg_catalog.format($1{placeholders})",
        template,
        *(str(arg) for arg in args),
        timeout=_TIMEOUT_S,
    )
    await conn.execute(statement, timeout=_TIMEOUT_S)


async def _privilege_message(conn: asyncpg.Connection, what: str) -> str:
    user = await conn.fetchval("SELECT pg_catalog.quote_ident(current_user)", timeout=_TIMEOUT_S)
    return (
        f"the database user {user} may not {what}: as a superuser, run `ALTER ROLE {user}"
        f" CREATEROLE` (workers need it to run published plugins); if {GROUP} was created by"
        f" another user, also `GRANT {GROUP} TO {user} WITH ADMIN OPTION`"
    )


def _scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), so that
    the password itself never reaches the server. `password` is ASCII (token_urlsafe), for
    which SASLprep changes nothing."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
