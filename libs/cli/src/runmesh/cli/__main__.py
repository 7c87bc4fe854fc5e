"""The `runmesh` command: one typer app, one module per command group."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import SecretStr, ValidationError

from runmesh.cli.dev_info import cli_settings
from runmesh.common.errors import RunmeshError
from runmesh.common.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="runmesh",
    help="runmesh: event-driven plugin runs on Kafka, PostgreSQL and S3.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def configure_logging(verbose: bool) -> None:
    """runmesh's own progress lines on stderr; stdout stays for what the user acts on."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("runmesh").setLevel(logging.DEBUG if verbose else logging.INFO)


@dataclass(slots=True, frozen=True)
class GatewayOptions:
    """The root `--gateway-url` and `--token` options; each set one wins over the
    environment and dev.json."""

    gateway_url: str | None = None
    token: str | None = None


def load_settings(*, from_dev: bool = True, options: GatewayOptions | None = None) -> Settings:
    """Settings from the environment, completed from a running `runmesh dev` (dev.json), with
    the root options on top."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        fail(f"invalid setting RUNMESH_{field.upper()}: {first['msg']}")
    if from_dev:
        settings = cli_settings(settings)
    update: dict[str, object] = {}
    if options is not None and options.gateway_url is not None:
        update["gateway_url"] = options.gateway_url
    if options is not None and options.token is not None:
        update["token"] = SecretStr(options.token)
    return settings.model_copy(update=update) if update else settings


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


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug details"),
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
    ctx.obj = GatewayOptions(gateway_url=gateway_url, token=token)


def _register() -> None:
    # Imported here: each module adds its commands to `app`.
    from runmesh.cli.commands import dev, plugin, runs, serve, submit, token

    for module in (dev, serve, token, submit, runs, plugin):
        module.register(app)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `runmesh` script; returns the exit status."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="runmesh")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
