"""`runmesh plugin`: the plugin author's commands (validate here; create, run and publish in
modules of their own that add themselves to `plugin_app`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

plugin_app = typer.Typer(
    help="Work on plugins: create one from a template, check it, run it locally, publish it."
)

# Modules that add a command to `plugin_app` when imported.
_SUBCOMMANDS: tuple[str, ...] = ("plugin_run", "plugin_create", "plugin_publish")


@plugin_app.command(
    "validate",
    help="Check config.yaml (each error names the file, the field and its line), import every "
    "entrypoint and build every params model's JSON Schema, as a worker does.",
)
def validate_command(
    path: Annotated[Path, typer.Argument(help="the plugin directory (holding config.yaml)")] = Path(
        "."
    ),
) -> None:
    from runmesh.cli.__main__ import fail
    from runmesh.common.errors import PluginError
    from runmesh.common.plugins.loader import load_plugin

    try:
        plugin = load_plugin(path.resolve())
    except PluginError as exc:
        fail(str(exc))
    config = plugin.config
    actions = ", ".join(
        f"{name} ({action.method})" for name, action in sorted(plugin.actions.items())
    )
    typer.echo(f"{config.code}@{config.version} ({config.category}) is valid: {actions}")


def register(app: typer.Typer) -> None:
    """Add `runmesh plugin` to `app`."""
    for module in _SUBCOMMANDS:
        importlib.import_module(f"runmesh.cli.commands.{module}")
    app.add_typer(plugin_app, name="plugin")
