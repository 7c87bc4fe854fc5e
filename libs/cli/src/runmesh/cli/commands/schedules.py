"""`runmesh schedules create|ls|pause|resume|rm`: runs and pipelines submitted at each tick of
a cron expression (through the gateway, as the caller's tenant)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.commands.pipeline import parse_param
from runmesh.cli.commands.submit import parse_params
from runmesh.cli.errors import CliError
from runmesh.cli.exits import fail, run_async
from runmesh.cli.gateway_client import command_client
from runmesh.cli.pipeline_file import load_definition

app = typer.Typer(
    help="Schedules: a run or a pipeline at each tick of a cron expression.", no_args_is_help=True
)


async def _call(ctx: typer.Context, method: str, path: str, body: Any = None) -> Any:
    async with command_client(ctx.obj) as api:
        return await api.request(method, path, **({} if body is None else {"json": body}))


@app.command("create", help="Create a schedule of a run (--run) or a pipeline (--pipeline).")
def create_command(
    ctx: typer.Context,
    name: str = typer.Argument(help="its name, unique for the tenant"),
    cron: str = typer.Option(
        ..., "--cron", help="5 fields (minute hour day month weekday), or 6 with seconds last"
    ),
    timezone: str = typer.Option("UTC", "--tz", help="IANA time zone the cron is read in"),
    overlap: str = typer.Option(
        "skip", "--overlap", help="when the previous run still runs: skip, queue, cancel_previous"
    ),
    run: str | None = typer.Option(
        None, "--run", help="a POST /v1/runs body as JSON, or @file.json"
    ),
    pipeline: Annotated[
        Path | None, typer.Option("--pipeline", help="a pipeline definition file")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE, a pipeline param (repeat for several)"),
    ] = None,
) -> None:
    if (run is None) == (pipeline is None):
        fail("give --run or --pipeline (one of them)", code=2)
    body: dict[str, Any] = {"name": name, "cron": cron, "timezone": timezone, "overlap": overlap}
    try:
        if run is not None:
            body["run"] = parse_params(run, source="--run")
        elif pipeline is not None:
            params = dict(map(parse_param, param or []))
            body["pipeline"] = {"pipeline": load_definition(pipeline), "params": params}
    except CliError as exc:
        fail(str(exc))
    schedule = run_async(_call(ctx, "POST", "/v1/schedules", body))
    typer.echo(f"schedule {schedule['id']} {name}: next tick {schedule['next_at']}")


@app.command("ls", help="The tenant's schedules.")
def ls_command(ctx: typer.Context) -> None:
    schedules = run_async(_call(ctx, "GET", "/v1/schedules"))
    if not schedules:
        typer.echo("no schedules")
        return
    table = Table("name", "cron", "next tick", "fired/skipped", "id")
    for schedule in schedules:
        table.add_row(
            schedule["name"],
            f"{schedule['cron']} ({schedule['timezone']}, {schedule['overlap']})",
            "paused" if schedule["paused"] else str(schedule["next_at"])[:19],
            f"{schedule['fired']}/{schedule['skipped']}",
            schedule["id"],
        )
        if schedule.get("last_error"):
            table.add_row("", f"last tick: {schedule['last_error']}", "", "", "")
    Console().print(table)


@app.command("pause", help="Fire no tick until resumed.")
def pause_command(ctx: typer.Context, schedule_id: str) -> None:
    run_async(_call(ctx, "POST", f"/v1/schedules/{schedule_id}/pause"))
    typer.echo(f"schedule {schedule_id} paused")


@app.command("resume", help="Fire again from the next tick.")
def resume_command(ctx: typer.Context, schedule_id: str) -> None:
    schedule = run_async(_call(ctx, "POST", f"/v1/schedules/{schedule_id}/resume"))
    typer.echo(f"schedule {schedule_id} resumed: next tick {schedule['next_at']}")


@app.command("rm", help="Delete a schedule (the runs it made stay).")
def rm_command(ctx: typer.Context, schedule_id: str) -> None:
    run_async(_call(ctx, "DELETE", f"/v1/schedules/{schedule_id}"))
    typer.echo(f"schedule {schedule_id} deleted")
