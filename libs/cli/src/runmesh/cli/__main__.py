"""The `runmesh` command: argument parsing and dispatch to one module per subcommand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from runmesh.common.errors import RunmeshError
from runmesh.common.settings import Settings


def _configure_logging(verbose: bool) -> None:
    # Only runmesh's own progress lines, on stderr; stdout stays for what the user acts on.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("runmesh").setLevel(logging.DEBUG if verbose else logging.INFO)


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise SystemExit(
            f"runmesh: invalid setting RUNMESH_{field.upper()}: {first['msg']}"
        ) from None


def _dev(args: argparse.Namespace) -> int:
    # Imported here so that `runmesh --help` does not load the Kafka, Postgres and S3 clients.
    from runmesh.cli.dev import run_dev
    from runmesh.common.sandbox import SandboxError

    settings = _load_settings()
    try:
        asyncio.run(run_dev(settings, demo=args.demo))
    except SandboxError as exc:
        print(f"runmesh dev: {exc.summary}", file=sys.stderr)
        return 1
    except RunmeshError as exc:
        print(f"runmesh dev: {(str(exc) or type(exc).__name__).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Only where the loop has no signal handlers (Windows); the parts were stopped.
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `runmesh` argument parser; each subcommand sets `handler` to its function."""
    parser = argparse.ArgumentParser(
        prog="runmesh", description="runmesh: event-driven plugin runs on Kafka, Postgres and S3."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run an ephemeral local sandbox (Kafka, Postgres, S3) until Ctrl-C",
        description=(
            "Start Tansu (Kafka), PostgreSQL and moto (S3) as local child processes and print "
            "the RUNMESH_* variables that reach them. Every RUNMESH_KAFKA_BOOTSTRAP, "
            "RUNMESH_DATABASE_URL or RUNMESH_S3_ENDPOINT_URL that is set replaces its part. "
            "Everything is deleted on exit."
        ),
    )
    dev.add_argument(
        "--no-demo", dest="demo", action="store_false", help="do not load the demo plugins"
    )
    dev.set_defaults(handler=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `runmesh` script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
