"""`runmesh token create` and `revoke`: a tenant's API tokens (an operator's task: uses the DB)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from runmesh.cli.exits import fail, needs_dev_extra, run_async
from runmesh.cli.settings import load_settings

if TYPE_CHECKING:
    from runmesh.core.settings import Settings

app = typer.Typer(help="API tokens (each belongs to one tenant).", no_args_is_help=True)


async def create(settings: Settings, tenant: str, name: str) -> str:
    """Create a token in the gateway's database (its schema is migrated first if needed)."""
    from runmesh.cli.errors import CliError
    from runmesh.core.db import apply_migrations, create_pool, load_migrations
    from runmesh.gateway.app import SCHEMA
    from runmesh.gateway.tokens import create_token

    if not settings.database_url:
        raise CliError("no database: start `runmesh dev`, or set RUNMESH_DATABASE_URL")
    pool = await create_pool(settings.database, min_size=1, max_size=1)
    try:
        await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
        return await create_token(pool, tenant, name)
    finally:
        await pool.close()


@app.command("create", help="Create a token; it is printed once, as the last word.")
def create_command(
    tenant: str = typer.Option(..., "--tenant", help="the tenant the token acts for"),
    name: str = typer.Option("", "--name", help="a label to recognise it by"),
) -> None:
    with needs_dev_extra("token create"):
        token = run_async(create(load_settings(), tenant, name))
    typer.echo(f"token for tenant {tenant}: {token}")


async def revoke(
    settings: Settings, *, token: str | None, tenant: str | None, name: str | None
) -> list[str]:
    """Revoke `token`, or the tenant's tokens (named `name`); the tenants of those revoked."""
    from runmesh.cli.errors import CliError
    from runmesh.core.db import apply_migrations, create_pool, load_migrations
    from runmesh.gateway.app import SCHEMA
    from runmesh.gateway.tokens import revoke_tokens

    if not settings.database_url:
        raise CliError("no database: start `runmesh dev`, or set RUNMESH_DATABASE_URL")
    pool = await create_pool(settings.database, min_size=1, max_size=1)
    try:
        await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
        return await revoke_tokens(pool, token=token, tenant=tenant, name=name)
    finally:
        await pool.close()


@app.command(
    "revoke",
    help="Revoke a token (give it, or `-` to read it from stdin), or with --tenant every token "
    "of a tenant (only those called --name, if given). Gateways refuse it within "
    "RUNMESH_TOKEN_CACHE_TTL_S (30 s), and end the SSE streams it opened.",
)
def revoke_command(
    token: str | None = typer.Argument(None, help="the token (rmt_…), or - for stdin"),
    tenant: str | None = typer.Option(None, "--tenant", help="revoke this tenant's tokens"),
    name: str | None = typer.Option(None, "--name", help="with --tenant: only tokens so named"),
) -> None:
    if token == "-":
        token = sys.stdin.readline().strip()
    if (token is None) == (tenant is None):
        fail("give a token or --tenant (not both)", code=2)
    if name is not None and tenant is None:
        fail("--name needs --tenant", code=2)
    settings = load_settings()
    with needs_dev_extra("token revoke"):
        revoked = run_async(revoke(settings, token=token or None, tenant=tenant, name=name))
    if not revoked:
        fail("no unrevoked token matched")
    within = f"{settings.token_cache_ttl_s:g} s"
    for owner in sorted(set(revoked)):
        count = revoked.count(owner)
        typer.echo(
            f"revoked {count} token{'s' if count != 1 else ''} of tenant {owner}: gateways refuse "
            f"{'them' if count != 1 else 'it'} within {within}, open event streams included"
        )
