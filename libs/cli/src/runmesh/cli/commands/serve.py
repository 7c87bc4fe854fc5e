"""`runmesh gateway` and `runmesh worker`: run one process of the platform in the foreground."""

from __future__ import annotations

import re

import typer

from runmesh.cli.exits import fail, needs_dev_extra
from runmesh.cli.settings import load_settings
from runmesh.core.errors import RunmeshError

app = typer.Typer()


@app.command("gateway", help="Serve the gateway (REST, SSE, run state) until Ctrl-C.")
def gateway(
    port: int = typer.Option(0, help="port (0 = RUNMESH_GATEWAY_PORT)"),
    host: str = typer.Option("", help="bind address (empty = RUNMESH_GATEWAY_HOST)"),
) -> None:
    with needs_dev_extra("gateway"):
        from runmesh.gateway.__main__ import serve

    settings = load_settings()
    update: dict[str, object] = {}
    if port:
        update["gateway_port"] = port
    if host:
        update["gateway_host"] = host
    serve(settings.model_copy(update=update))


@app.command(
    "worker",
    help="Serve one category's run requests with its built-in plugins and RUNMESH_PLUGIN_PATH.",
)
def worker(
    service: str = typer.Argument(
        help="a category (upload, export, pre_annotation, neural_net, or any other: its "
        "RUNMESH_PLUGIN_PATH plugins), a service (to_task, train) or a declared service "
        "(runmesh.upload:service)"
    ),
    pool: str = typer.Option("", help="its pool (empty = RUNMESH_WORKER_POOL, else `default`)"),
    labels: str = typer.Option(
        "", help="what it offers, comma-separated, e.g. gpu,cuda12 (empty = RUNMESH_WORKER_LABELS)"
    ),
    gpus: int | None = typer.Option(
        None, min=0, max=1024, help="GPUs it offers runs (unset = RUNMESH_WORKER_GPUS, else 0)"
    ),
    memory_mb: int | None = typer.Option(
        None,
        "--memory-mb",
        min=1,
        help="memory it offers runs, MiB (unset = RUNMESH_WORKER_MEMORY_MB, else the machine's)",
    ),
) -> None:
    with needs_dev_extra("worker"):
        from runmesh.cli.services import service_main

    from runmesh.core.pools import POOL_PATTERN, parse_labels

    settings = load_settings()
    update: dict[str, object] = {}
    if pool and not re.fullmatch(POOL_PATTERN, pool):
        fail(f"--pool {pool!r} is not of the form {POOL_PATTERN}")
    if pool:
        update["worker_pool"] = pool
    if gpus is not None:
        update["worker_gpus"] = gpus
    if memory_mb is not None:
        update["worker_memory_mb"] = memory_mb
    try:
        if labels:
            update["worker_labels"] = parse_labels(labels)
        entry = service_main(service)
    except ValueError as exc:
        fail(f"--labels: {exc}")
    except RunmeshError as exc:
        fail(str(exc))
    entry(settings.model_copy(update=update))
