"""`runmesh pipeline run|show`: start a pipeline from its definition file and follow it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from runmesh.cli.errors import CliError
from runmesh.cli.exits import fail, run_async
from runmesh.cli.gateway_client import GatewayClient, command_client
from runmesh.cli.pipeline_file import load_definition
from runmesh.cli.pipeline_view import follow_pipeline, print_steps
from runmesh.cli.settings import load_settings, require_gateway
from runmesh.cli.watch import EXIT_CODES

app = typer.Typer(
    help="Run pipelines: steps of several categories chained as one run (docs/pipelines.md).",
    no_args_is_help=True,
)


def parse_param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE`: VALUE as JSON when it is JSON (numbers, true, objects), else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"--param {text!r}: write NAME=VALUE")
    try:
        return name, orjson.loads(value)
    except orjson.JSONDecodeError:
        return name, value


async def follow(api: GatewayClient, run_id: str, console: Console, *, debug: bool) -> int:
    """Render each step live until the pipeline ends, then how each step ended; its exit
    status."""
    pipeline = await follow_pipeline(api, run_id, console, debug=debug)
    print_steps(console, pipeline)
    return EXIT_CODES[pipeline["run"]["state"]]


async def start(
    ctx_options: Any, path: str, body: dict[str, Any], *, wait: bool, console: Console
) -> int:
    """POST `body` to `path` (start or resume); print the pipeline run's id; with `wait`,
    follow it to its end."""
    url, token = require_gateway(load_settings(options=ctx_options))
    async with GatewayClient(url, token) as api:
        pipeline = await api.request("POST", path, json=body)
        run = pipeline["run"]
        console.print(f"pipeline run {run['id']} {run['state']}", markup=False, highlight=False)
        if not wait:
            return 0
        return await follow(api, run["id"], console, debug=ctx_options.verbose)


@app.command(
    "run",
    help="Start the pipeline FILE defines (YAML or JSON). Exit status with --wait: "
    "0 succeeded, 1 failed, 2 cancelled.",
)
def run_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the pipeline definition (docs/pipelines.md)")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE, a pipeline param (repeat for several)"),
    ] = None,
    wait: bool = typer.Option(
        False, "--wait", "-w", help="follow each step live (progress, logs) to the end"
    ),
) -> None:
    try:
        body = {"pipeline": load_definition(file), "params": dict(map(parse_param, param or []))}
    except CliError as exc:
        fail(str(exc))
    code = run_async(start(ctx.obj, "/v1/pipelines", body, wait=wait, console=Console()))
    raise typer.Exit(code)


@app.command(
    "resume",
    help="Run a failed or cancelled pipeline again from the steps that did not succeed, "
    "taking over those that did. Exit status with --wait as for run.",
)
def resume_command(
    ctx: typer.Context,
    run_id: str,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE, a param to change (repeat for several)"),
    ] = None,
    wait: bool = typer.Option(
        False, "--wait", "-w", help="follow each step live (progress, logs) to the end"
    ),
) -> None:
    try:
        body = {"params": dict(map(parse_param, param or []))}
    except CliError as exc:
        fail(str(exc))
    path = f"/v1/pipelines/{run_id}/resume"
    code = run_async(start(ctx.obj, path, body, wait=wait, console=Console()))
    raise typer.Exit(code)


@app.command("show", help="A pipeline run, its definition and its steps, as JSON.")
def show_command(ctx: typer.Context, run_id: str) -> None:
    async def go() -> Any:
        async with command_client(ctx.obj) as api:
            return await api.request("GET", f"/v1/pipelines/{run_id}")

    typer.echo(orjson.dumps(run_async(go()), option=orjson.OPT_INDENT_2).decode())
