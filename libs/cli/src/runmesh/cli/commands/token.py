"""`runmesh token create`: issue an API token for a tenant (an operator's task: uses the DB)."""

from __future__ import annotations

import typer

from runmesh.common.settings import Settings

token_app = typer.Typer(help="API tokens (each belongs to one tenant).", no_args_is_help=True)


async def create(settings: Settings, tenant: str, name: str) -> str:
    """Create a token in the gateway's database (its schema is migrated first if needed)."""
    from runmesh.cli.errors import CliError
    from runmesh.common.db import apply_migrations, create_pool, load_migrations
    from runmesh.gateway.app import SCHEMA
    from runmesh.gateway.tokens import create_token

    if not settings.database_url:
        raise CliError("no database: start `runmesh dev`, or set RUNMESH_DATABASE_URL")
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
        return await create_token(pool, tenant, name)
    finally:
        await pool.close()


@token_app.command("create", help="Create a token; it is printed once, as the last word.")
def create_command(
    tenant: str = typer.Option(..., "--tenant", help="the tenant the token acts for"),
    name: str = typer.Option("", "--name", help="a label to recognise it by"),
) -> None:
    from runmesh.cli.__main__ import load_settings, run_async

    token = run_async(create(load_settings(), tenant, name))
    typer.echo(f"token for tenant {tenant}: {token}")


def register(app: typer.Typer) -> None:
    """Add `runmesh token` to `app`."""
    app.add_typer(token_app, name="token")
