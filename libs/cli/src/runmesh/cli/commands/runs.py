"""`runmesh runs ls|show|logs|watch|cancel|rerun`: look at and act on runs."""

from __future__ import annotations

from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.exits import run_async
from runmesh.cli.gateway_client import command_client
from runmesh.cli.watch import watch_run

app = typer.Typer(help="List, inspect, follow, cancel and rerun runs.", no_args_is_help=True)


@app.command("ls", help="Runs, newest first.")
def ls(
    ctx: typer.Context,
    state: str | None = typer.Option(None, help="queued, running, succeeded, failed, cancelled"),
    category: str | None = typer.Option(None),
    action: str | None = typer.Option(None),
    name: str | None = typer.Option(
        None, help="runs whose name (its `name` param, or a pipeline's name) contains this"
    ),
    limit: int = typer.Option(20, min=1, max=200),
) -> None:
    async def go() -> dict[str, Any]:
        params = {
            "state": state,
            "category": category,
            "action": action,
            "name": name,
            "limit": limit,
        }
        async with command_client(ctx.obj) as api:
            page: dict[str, Any] = await api.request(
                "GET", "/v1/runs", params={k: v for k, v in params.items() if v is not None}
            )
            return page

    page = run_async(go())
    table = Table("id", "name", "state", "category", "action", "plugin", "%", "created")
    for run in page.get("items", []):
        percent = run.get("percent")
        queue = run.get("queue") if run["state"] == "queued" else None
        table.add_row(
            run["id"],
            run.get("name") or "",
            # Its place in its queue (and a priority other than everyone's 5); `runs show`
            # and `runs watch` say why it waits.
            _queued(queue["position"], run.get("priority")) if queue else run["state"],
            run["category"],
            run["action"],
            run.get("plugin") or "",
            "" if percent is None else f"{percent:.0f}",
            str(run.get("created_at", ""))[:19],
        )
    Console().print(table)


def _queued(position: int, priority: int | None) -> str:
    """`queued #3`, or `queued #3 p8` for a run of another priority than 5."""
    shown = f"queued #{position}"
    return shown if priority in (None, 5) else f"{shown} p{priority}"


@app.command("show", help="One run as JSON.")
def show(ctx: typer.Context, run_id: str) -> None:
    async def go() -> Any:
        async with command_client(ctx.obj) as api:
            return await api.run(run_id)

    typer.echo(orjson.dumps(run_async(go()), option=orjson.OPT_INDENT_2).decode())


@app.command("logs", help="A run's log lines.")
def logs(
    ctx: typer.Context,
    run_id: str,
    level: str | None = typer.Option(None, help="only this level (debug … success)"),
) -> None:
    async def go() -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        after: int | None = None
        async with command_client(ctx.obj) as api:
            while True:
                params: dict[str, Any] = {"limit": 500}
                if level:
                    params["level"] = level
                if after is not None:
                    params["after"] = after
                page = await api.request("GET", f"/v1/runs/{run_id}/logs", params=params)
                items = page.get("items", [])
                lines.extend(items)
                after = page.get("next_after")
                if not items or after is None:
                    return lines

    for line in run_async(go()):
        typer.echo(f"{str(line.get('ts', ''))[:23]} [{line.get('level')}] {line.get('message')}")


@app.command("watch", help="Follow a run live; exit 0 only if it succeeds.")
def watch(ctx: typer.Context, run_id: str) -> None:
    async def go() -> int:
        async with command_client(ctx.obj) as api:
            return await watch_run(api, run_id, Console(), debug=ctx.obj.verbose)

    raise typer.Exit(run_async(go()))


@app.command("cancel", help="Cancel a queued or running run.")
def cancel(ctx: typer.Context, run_id: str) -> None:
    async def go() -> Any:
        async with command_client(ctx.obj) as api:
            return await api.request("POST", f"/v1/runs/{run_id}/cancel")

    run = run_async(go())
    typer.echo(
        f"run {run_id} {run.get('state', 'cancel requested') if run else 'cancel requested'}"
    )


@app.command("rerun", help="Run again with the same params (a new run, linked to this one).")
def rerun(
    ctx: typer.Context, run_id: str, wait: bool = typer.Option(False, "--wait", "-w")
) -> None:
    async def go() -> int:
        async with command_client(ctx.obj) as api:
            run = await api.request("POST", f"/v1/runs/{run_id}/rerun")
            typer.echo(f"run {run['id']} {run['state']} (rerun of {run_id})")
            if not wait:
                return 0
            return await watch_run(api, run["id"], Console(), debug=ctx.obj.verbose)

    raise typer.Exit(run_async(go()))
