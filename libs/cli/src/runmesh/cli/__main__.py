"""The `runmesh` command: the root typer app, assembled from one module per command group.

Only this module imports the command modules; they take what they share from `exits` and
`settings`, never from here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import typer

from runmesh.cli.commands import (
    dev,
    limits,
    model,
    pipeline,
    plugin,
    runs,
    schedules,
    serve,
    submit,
    token,
    workers,
)
from runmesh.cli.settings import GatewayOptions

if TYPE_CHECKING:
    from types import ModuleType

app = typer.Typer(
    name="runmesh",
    help="runmesh: event-driven plugin runs on Kafka, PostgreSQL and S3.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Each command module holds its commands in its own `app`: a group gets a name, a module of
# top-level commands none (its commands join the root's). Their order is `--help`'s order.
app.add_typer(dev.app)
app.add_typer(serve.app)
app.add_typer(submit.app)
app.add_typer(token.app, name="token")
app.add_typer(runs.app, name="runs")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(plugin.app, name="plugin")
app.add_typer(workers.app)
app.add_typer(schedules.app, name="schedules")
app.add_typer(limits.app, name="limits")
app.add_typer(model.app, name="model")


def configure_logging(verbose: bool) -> None:
    """runmesh's own progress lines on stderr; stdout stays for what the user acts on."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("runmesh").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="log debug details, and show runs' debug log lines"
    ),
    gateway_url: str | None = typer.Option(
        None,
        "--gateway-url",
        metavar="URL",
        help="gateway to talk to (default: RUNMESH_GATEWAY_URL, else a running `runmesh dev`)",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        metavar="TOKEN",
        help="API token to send (default: RUNMESH_TOKEN, else a running `runmesh dev`); "
        "other local users can read a command line: prefer RUNMESH_TOKEN on shared machines",
    ),
) -> None:
    configure_logging(verbose)
    # Subcommand contexts inherit `obj`: commands read the options from their own context.
    ctx.obj = GatewayOptions(gateway_url=gateway_url, token=token, verbose=verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `runmesh` script; returns the exit status."""
    _without_httpx_cli()
    try:
        app(args=list(argv) if argv is not None else None, prog_name="runmesh")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _without_httpx_cli() -> None:
    """Keep `import httpx` from importing httpx's own command-line client: `httpx/__init__`
    imports `httpx._main` when it can, which pulls click, rich's syntax highlighting and
    pygments (a third of `runmesh runs ls`'s start) for a command runmesh never runs. A None
    in `sys.modules` makes that import fail, and httpx falls back to a stub. Only before httpx
    is imported, so a process that already uses it keeps it whole."""
    if "httpx" not in sys.modules:
        # Documented import-system behaviour, which typeshed's `sys.modules` type leaves out.
        modules = cast("dict[str, ModuleType | None]", sys.modules)
        modules.setdefault("httpx._main", None)


if __name__ == "__main__":
    sys.exit(main())
