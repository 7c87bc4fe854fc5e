"""`runmesh dev`: the sandbox, the gateway and every service, until Ctrl-C."""

from __future__ import annotations

import typer

from runmesh.cli.exits import needs_dev_extra, run_async
from runmesh.cli.sandbox_home import prepare_home
from runmesh.cli.settings import load_settings

app = typer.Typer()


@app.command(
    "dev",
    help=(
        "Start Tansu (Kafka), PostgreSQL and moto (S3) as local child processes, the gateway "
        "and one replica of each service, then a demo run. Prints the gateway URL and an API "
        "token and writes them to $RUNMESH_HOME/dev.json for the other commands. Every "
        "RUNMESH_KAFKA_BOOTSTRAP, RUNMESH_DATABASE_URL or RUNMESH_S3_ENDPOINT_URL that is set "
        "replaces its part. Ctrl-C stops everything."
    ),
)
def dev(
    ctx: typer.Context,
    port: int = typer.Option(0, help="gateway port (0 = RUNMESH_GATEWAY_PORT)"),
    demo: bool = typer.Option(True, "--demo/--no-demo", help="run the demo after start"),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="show the demo's debug log lines (one per epoch, ...)"
    ),
) -> None:
    with needs_dev_extra("dev"):
        from runmesh.cli.dev import run_dev

    settings = prepare_home(load_settings(from_dev=False))
    if port:
        settings = settings.model_copy(update={"gateway_port": port})
    verbose = verbose or (ctx.obj is not None and ctx.obj.verbose)
    run_async(run_dev(settings, demo=demo, verbose=verbose))
