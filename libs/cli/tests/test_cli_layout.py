"""Every command module registers the same way: its commands in its own `app`, added by the root
or by its group, so none is left out and none registers itself."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import runmesh.cli.commands
from runmesh.cli.__main__ import app as root


def added_apps(app: typer.Typer) -> list[typer.Typer]:
    """The typer apps added under `app`, at any depth."""
    found: list[typer.Typer] = []
    for group in app.registered_groups:
        assert group.typer_instance is not None
        found += [group.typer_instance, *added_apps(group.typer_instance)]
    return found


def test_every_command_module_has_an_app_the_root_adds() -> None:
    modules = {
        info.name: importlib.import_module(f"runmesh.cli.commands.{info.name}")
        for info in pkgutil.iter_modules(runmesh.cli.commands.__path__)
    }
    added = added_apps(root)
    for name, module in modules.items():
        assert isinstance(getattr(module, "app", None), typer.Typer), name
        assert not hasattr(module, "register"), name
        assert sum(app is module.app for app in added) == 1, f"{name}.app added once"
    assert len(added) == len(modules)
