"""`runmesh --help` stays fast: it imports only what help needs (typer, rich, the command
modules), never the settings, the HTTP client, asyncio, the wire models or the platform."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

FORBIDDEN = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "httpx",
    "asyncio",
    "runmesh.core.settings",
    "runmesh.core.events",
    "aiobotocore",
    "asyncpg",
    "runmesh.gateway",
    "runmesh.sandbox",
    "runmesh.worker",
    "runmesh.execution",
    "runmesh.upload",
    "runmesh.export",
    "runmesh.to_task",
    "runmesh.train",
)
"""Modules (with their submodules) that `--help` must not import."""


def imported_by(argv: list[str]) -> list[str]:
    """The modules loaded by a fresh interpreter once `runmesh ARGV` has run."""
    code = (
        "import sys; from runmesh.cli.__main__ import main; "
        # A None entry blocks an import (httpx's CLI, see __main__): it loaded nothing.
        f"code = main({argv!r}); print(sorted(n for n, m in sys.modules.items() if m))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = ast.literal_eval(done.stdout.splitlines()[-1])
    assert isinstance(modules, list)
    return modules


TYPER_NEEDS = ("pydantic", "pydantic_core")
"""What typer itself imports (typer._adapters, typer 0.2x) to convert the options of a command
it runs: `runmesh runs ls --help` runs the root callback, whose options it converts."""


def is_under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize("argv", [["--help"], ["runs", "ls", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    modules = imported_by(argv)
    assert "typer" in modules  # the check itself works: help did import something
    allowed = TYPER_NEEDS if "typer._adapters" in modules else ()
    heavy = [name for name in modules if is_under(name, FORBIDDEN) and not is_under(name, allowed)]
    assert heavy == [], f"`runmesh {' '.join(argv)}` imported {heavy}"


def test_a_request_does_not_import_httpx_s_own_command_line_client() -> None:
    # httpx imports its CLI (click, pygments through rich) when it can: a tenth of a second of
    # every `runmesh runs ls` on this machine, for a command runmesh never runs.
    argv = ["--gateway-url", "http://127.0.0.1:9", "--token", "t", "runs", "ls"]
    modules = imported_by(argv)
    assert "httpx" in modules  # the check itself works: the request imported the client
    assert not [name for name in modules if is_under(name, ("httpx._main", "click", "pygments"))]
