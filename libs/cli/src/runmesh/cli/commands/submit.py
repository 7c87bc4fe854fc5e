"""`runmesh submit`: request a run through the gateway, optionally following it to its end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

from runmesh.cli.errors import CliError
from runmesh.cli.exits import fail, run_async
from runmesh.cli.gateway_client import GatewayClient
from runmesh.cli.settings import load_settings, require_gateway
from runmesh.cli.watch import watch_run

if TYPE_CHECKING:
    from runmesh.core.settings import Settings

app = typer.Typer()


def parse_params(text: str, *, source: str = "--params") -> dict[str, Any]:
    """Params as JSON text, or `@path` to a JSON file; errors name `source` (the option or
    argument the text came from) or the file."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        source = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CliError(f"cannot read params file {path}: {exc.strerror}") from exc
    try:
        params = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise CliError(f"{source} must be a JSON object")
    return params


async def submit(
    settings: Settings,
    body: dict[str, Any],
    *,
    wait: bool,
    console: Console,
    debug: bool = False,
    idempotency_key: str | None = None,
) -> int:
    """Submit; print the run id; with `wait`, follow it and return its exit status."""
    url, token = require_gateway(settings)
    async with GatewayClient(url, token) as api:
        run = await api.submit(body, idempotency_key=idempotency_key)
        console.print(f"run {run['id']} {run['state']}", markup=False, highlight=False)
        if not wait:
            return 0
        return await watch_run(api, run["id"], console, debug=debug)


@app.command(
    "submit",
    help="Request a run of CATEGORY's ACTION. Exit status with --wait: 0 succeeded, "
    "1 failed, 2 cancelled.",
)
def submit_command(
    ctx: typer.Context,
    category: str = typer.Argument(help="service category, e.g. upload, export"),
    action: str = typer.Argument(help="the plugin action to run"),
    params: str = typer.Option("{}", "--params", "-p", help="JSON object, or @file.json"),
    plugin: str | None = typer.Option(None, help="plugin code or code@version"),
    timeout: float | None = typer.Option(None, "--timeout", help="fail after SECONDS"),
    max_attempts: int | None = typer.Option(
        None,
        "--max-attempts",
        min=1,
        help="starts before the run fails (a lost worker or a retryable failure starts it "
        "again); at most the workers' RUNMESH_MAX_ATTEMPTS",
    ),
    retry_backoff: float | None = typer.Option(
        None,
        "--retry-backoff",
        min=0,
        metavar="SECONDS",
        help="wait before the second attempt after a retryable failure, doubled for each "
        "later one; at most the workers' RUNMESH_RETRY_BACKOFF_MAX_S",
    ),
    pool: Annotated[
        list[str] | None,
        typer.Option(
            "--pool",
            metavar="POOL",
            help="a pool of workers it may run on; repeat for several, in order of preference",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", metavar="LABEL", help="a label its worker must have (e.g. gpu); repeatable"
        ),
    ] = None,
    priority: int | None = typer.Option(
        None,
        "--priority",
        min=1,
        max=9,
        help="1 (lowest) to 9 (highest), default 5: among the queued runs of its pool, a "
        "higher priority starts first",
    ),
    lock_all: bool = typer.Option(
        False, "--lock-all", help="run it alone on its worker (no other run beside it)"
    ),
    wait: bool = typer.Option(False, "--wait", "-w", help="follow the run to its end"),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        metavar="KEY",
        help="submitting again with the same KEY answers the run it made, not a new one",
    ),
) -> None:
    body: dict[str, Any] = {"category": category, "action": action}
    try:
        body["params"] = parse_params(params)
    except CliError as exc:
        fail(str(exc))
    if plugin:
        body["plugin"] = plugin
    if timeout is not None:
        body["timeout_s"] = timeout
    if max_attempts is not None:
        body["max_attempts"] = max_attempts
    if retry_backoff is not None:
        body["retry_backoff_s"] = retry_backoff
    if pool or label:  # the gateway checks the names (a 422 naming the bad one)
        body["placement"] = {"pools": pool or [], "labels": label or []}
    if priority is not None:
        body["priority"] = priority
    if lock_all:
        body["resources"] = {"lock_all": True}
    code = run_async(
        submit(
            load_settings(options=ctx.obj),
            body,
            wait=wait,
            console=Console(),
            debug=ctx.obj.verbose,
            idempotency_key=idempotency_key,
        )
    )
    raise typer.Exit(code)
