"""`runmesh model import|ls`: bring a detector trained elsewhere, list the tenant's models."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.exits import run_async
from runmesh.cli.gateway_client import command_client
from runmesh.cli.watch import watch_run

app = typer.Typer(help="Models: import an ONNX detector, list the registered ones.")

_LAYOUTS = "yolov8, yolov5, torchvision or boxes_scores_classes (docs/train.md#import_model)"


@app.command(
    "import",
    help="Import an ONNX detector from a storage of yours: queues the import_model run that "
    "checks the file in its layout and registers it. Exit status with --wait: 0 imported, "
    "1 failed, 2 cancelled.",
)
def import_command(
    ctx: typer.Context,
    uri: str = typer.Argument(help="the .onnx file, e.g. s3://bucket/models/yolov8n.onnx"),
    name: str = typer.Option(..., "--name", help="the model's name (unique among yours)"),
    layout: str = typer.Option(..., "--layout", help=_LAYOUTS),
    classes: str = typer.Option(
        ..., "--classes", help="its class names in output order, comma-separated"
    ),
    description: str = typer.Option("", "--description"),
    wait: bool = typer.Option(False, "--wait", "-w", help="follow the run to its end"),
) -> None:
    body = {
        "name": name,
        "uri": uri,
        "layout": layout,
        "classes": [part.strip() for part in classes.split(",") if part.strip()],
        "description": description,
    }
    console = Console()

    async def go() -> int:
        async with command_client(ctx.obj) as api:
            run: dict[str, Any] = await api.request("POST", "/v1/models", json=body)
            console.print(f"run {run['id']} {run['state']}", markup=False, highlight=False)
            if not wait:
                return 0
            return await watch_run(api, run["id"], console, debug=ctx.obj.verbose)

    raise typer.Exit(run_async(go()))


@app.command("ls", help="Your models, newest first.")
def ls_command(
    ctx: typer.Context, limit: int = typer.Option(20, min=1, max=200, help="how many")
) -> None:
    async def go() -> dict[str, Any]:
        async with command_client(ctx.obj) as api:
            page: dict[str, Any] = await api.request("GET", "/v1/models", params={"limit": limit})
            return page

    page = run_async(go())
    table = Table("id", "name", "action", "classes", "created")
    for model in page.get("items", []):
        table.add_row(
            model["id"],
            model["name"],
            model["action"],
            ", ".join(model["classes"]),
            model["created_at"],
        )
    Console().print(table)
