"""How a command ends: one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer

from runmesh.common.errors import RunmeshError

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line (no traceback) and exit with `code`."""
    typer.echo(f"runmesh: {message}", err=True)
    raise typer.Exit(code)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; runmesh errors become one line and exit status 1."""
    try:
        return asyncio.run(coro)
    except RunmeshError as exc:
        # A sandbox error's summary is one line; its full text carries a log tail.
        fail(getattr(exc, "summary", None) or str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
