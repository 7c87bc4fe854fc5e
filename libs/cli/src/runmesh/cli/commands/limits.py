"""`runmesh limits set|ls|rm`: tenants' limits on runs under way and queued (an operator's
task: uses the gateway's database, like `runmesh token`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.exits import fail, needs_dev_extra, run_async
from runmesh.cli.settings import load_settings

if TYPE_CHECKING:
    import asyncpg

app = typer.Typer(
    help="Tenants' limits: runs under way at once and queued (docs/operations.md).",
    no_args_is_help=True,
)
T = TypeVar("T")
_CATEGORY_HELP = "the limit of one category (default: over all the tenant's categories)"


async def _with_database(use: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """`use` on the gateway's database (its schema migrated first if needed)."""
    from runmesh.cli.errors import CliError
    from runmesh.core.db import apply_migrations, create_pool, load_migrations
    from runmesh.gateway.app import SCHEMA

    settings = load_settings()
    if not settings.database_url:
        raise CliError("no database: start `runmesh dev`, or set RUNMESH_DATABASE_URL")
    pool = await create_pool(settings.database, min_size=1, max_size=1)
    try:
        await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
        return await use(pool)
    finally:
        await pool.close()


@app.command("set", help="Set a tenant's limit (replacing the one it had for that category).")
def set_command(
    tenant: str = typer.Argument(help="the tenant"),
    category: str = typer.Option("*", "--category", help=_CATEGORY_HELP),
    max_running: int | None = typer.Option(
        None, "--max-running", min=1, help="runs under way at once; more wait queued"
    ),
    max_queued: int | None = typer.Option(
        None, "--max-queued", min=0, help="runs queued at once; more are refused with a 429"
    ),
) -> None:
    if max_running is None and max_queued is None:
        fail("give --max-running, --max-queued or both", code=2)
    with needs_dev_extra("limits set"):
        from runmesh.gateway.tenant_limits import set_limit

    async def go(pool: asyncpg.Pool) -> None:
        await set_limit(pool, tenant, category, max_running=max_running, max_queued=max_queued)

    run_async(_with_database(go))
    of = "all categories" if category == "*" else f"category {category}"
    typer.echo(
        f"tenant {tenant}, {of}: at most {_text(max_running)} under way, {_text(max_queued)} queued"
    )


@app.command("ls", help="Every tenant's limits (or one tenant's).")
def ls_command(tenant: str | None = typer.Argument(None, help="only this tenant")) -> None:
    with needs_dev_extra("limits ls"):
        from runmesh.gateway.tenant_limits import all_limits

    async def go(pool: asyncpg.Pool) -> list[Any]:
        return await all_limits(pool, tenant)

    limits = run_async(_with_database(go))
    if not limits:
        typer.echo("no limits" + (f" for tenant {tenant}" if tenant else ""))
        return
    table = Table("tenant", "category", "max running", "max queued")
    for limit in limits:
        table.add_row(
            limit.tenant, limit.category, _text(limit.max_running), _text(limit.max_queued)
        )
    Console().print(table)


@app.command("rm", help="Remove a tenant's limit.")
def rm_command(
    tenant: str = typer.Argument(help="the tenant"),
    category: str = typer.Option("*", "--category", help=_CATEGORY_HELP),
) -> None:
    with needs_dev_extra("limits rm"):
        from runmesh.gateway.tenant_limits import remove_limit

    async def go(pool: asyncpg.Pool) -> bool:
        return await remove_limit(pool, tenant, category)

    if not run_async(_with_database(go)):
        fail(f"tenant {tenant} has no limit for {category}")
    typer.echo(f"removed tenant {tenant}'s limit for {category}")


def _text(value: int | None) -> str:
    return "any number" if value is None else str(value)
