"""`runmesh plugin validate`: check a plugin directory as a worker loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runmesh.cli.exits import fail

app = typer.Typer()


@app.command(
    "validate",
    help="Check config.yaml (each error names the file, the field and its line), import every "
    "entrypoint and build every params model's JSON Schema, as a worker does.",
)
def validate_command(
    path: Annotated[Path, typer.Argument(help="the plugin directory (holding config.yaml)")] = Path(
        "."
    ),
) -> None:
    from runmesh.core.errors import PluginError
    from runmesh.plugins.loader import load_plugin

    try:
        plugin = load_plugin(path.resolve())
    except PluginError as exc:
        fail(str(exc))
    config = plugin.config
    actions = ", ".join(
        f"{name} ({action.method})" for name, action in sorted(plugin.actions.items())
    )
    typer.echo(f"{config.code}@{config.version} ({config.category}) is valid: {actions}")
