"""`runmesh plugin`: the plugin author's commands, one module each (validate, run, create,
publish with versions and delete), gathered into one group."""

from __future__ import annotations

import typer

from runmesh.cli.commands import plugin_create, plugin_publish, plugin_run, plugin_validate

app = typer.Typer(
    help="Work on plugins: create one from a template, check it, run it locally, publish it."
)
# In `runmesh plugin --help`'s order.
app.add_typer(plugin_validate.app)
app.add_typer(plugin_run.app)
app.add_typer(plugin_create.app)
app.add_typer(plugin_publish.app)
