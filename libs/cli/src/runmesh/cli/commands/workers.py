"""`runmesh workers`: the live workers, what they serve and how busy they are."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.exits import run_async
from runmesh.cli.gateway_client import command_client

app = typer.Typer()


@app.command("workers", help="Live workers: category, pool, labels, busy slots.")
def workers(
    ctx: typer.Context,
    category: str | None = typer.Option(None, help="only those serving this category"),
    pool: str | None = typer.Option(None, help="only those of this pool"),
) -> None:
    async def go() -> dict[str, Any]:
        params = {k: v for k, v in {"category": category, "pool": pool}.items() if v}
        async with command_client(ctx.obj) as api:
            page: dict[str, Any] = await api.request("GET", "/v1/workers", params=params)
            return page

    items = run_async(go()).get("items", [])
    if not items:
        what = " ".join(f"{k} {v}" for k, v in (("category", category), ("pool", pool)) if v)
        typer.echo(f"no live worker{' of ' + what if what else ''}")
        return
    # GPUs only where a worker offers some: the table stays narrow enough for a terminal.
    gpus = any(worker.get("gpus") for worker in items)
    table = Table("worker", "category", "pool", "labels", "busy", *(["gpus"] if gpus else []))
    for column in ("state", "last seen"):
        table.add_column(column)
    for worker in items:
        table.add_row(
            worker["worker"],
            worker["category"],
            worker["pool"],
            ",".join(worker.get("labels") or []),
            f"{worker['busy']}/{worker['slots']}",
            *([str(worker.get("gpus") or 0)] if gpus else []),
            worker["state"],
            str(worker.get("last_seen", ""))[11:19],
        )
    Console().print(table)
