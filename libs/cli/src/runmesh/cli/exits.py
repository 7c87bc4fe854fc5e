"""How a command ends: one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, NoReturn, TypeVar

import typer

from runmesh.core.errors import RunmeshError

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line (no traceback) and exit with `code`."""
    typer.echo(f"runmesh: {message}", err=True)
    raise typer.Exit(code)


# What `runmesh-cli[dev]` adds: the packages that run the platform itself.
DEV_EXTRA_PACKAGES = (
    "runmesh.sandbox",
    "runmesh.worker",
    "runmesh.execution",
    "runmesh.gateway",
    "runmesh.upload",
    "runmesh.export",
    "runmesh.to_task",
    "runmesh.train",
)


@contextlib.contextmanager
def needs_dev_extra(command: str) -> Iterator[None]:
    """Around what imports the platform's own packages: without `runmesh-cli[dev]` installed,
    one line saying how to get them instead of an ImportError's traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not any(missing == p or missing.startswith(p + ".") for p in DEV_EXTRA_PACKAGES):
            raise
        fail(
            f"`runmesh {command}` runs the platform itself, and {missing} is not installed: "
            "install the CLI with its dev extra (pip install 'runmesh-cli[dev]')"
        )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; runmesh errors become one line and exit status 1."""
    import asyncio  # imported here, not above, to keep `runmesh --help` fast

    try:
        return asyncio.run(coro)
    except RunmeshError as exc:
        # A sandbox error's summary is one line; its full text carries a log tail.
        fail(getattr(exc, "summary", None) or str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
