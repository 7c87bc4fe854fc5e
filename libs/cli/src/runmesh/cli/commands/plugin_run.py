"""`runmesh plugin run`: run an action of a plugin directory, in this process or on the mesh."""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

from runmesh.cli.commands.submit import parse_params, submit
from runmesh.cli.errors import CliError
from runmesh.cli.exits import fail, needs_dev_extra, run_async
from runmesh.cli.render import LEVEL_STYLES, live_bars, print_line
from runmesh.cli.settings import load_settings
from runmesh.cli.watch import EXIT_CODES
from runmesh.core.errors import RunmeshError

if TYPE_CHECKING:
    # Imported where used: every `runmesh` invocation imports this module, and the plugin
    # runtime is only needed by `--debug`; asyncio, pydantic and the events (pydantic models)
    # are imported inside the functions too, to keep `runmesh --help` fast.
    import asyncio

    from pydantic import BaseModel
    from rich.progress import TaskID

    from runmesh.core.events import (
        ArtifactPayload,
        EventPayload,
        LogPayload,
        MetricPayload,
        ProgressPayload,
    )
    from runmesh.core.settings import Settings
    from runmesh.execution import Failed, Outcome
    from runmesh.plugins.loader import LoadedAction, LoadedPlugin

EXIT_INTERRUPTED = 130  # the shell's code for "killed by SIGINT"

app = typer.Typer()


@app.command(
    "run",
    help="Run ACTION of the plugin at --path with PARAMS (a JSON object, or @file.json). "
    "With --debug it runs in this process without Kafka, reporting progress, logs, metrics and "
    "artifacts on stderr and the result JSON on stdout; settings come from the environment or "
    "a running `runmesh dev`, so actions reach its S3 and PostgreSQL. Without --debug the run "
    "is submitted to the mesh as CODE@VERSION of the plugin's category (a worker must know "
    "that version) and followed like `runmesh submit --wait`. Ctrl-C cancels a --debug run; "
    "a second Ctrl-C quits at once. Exit status: 0 succeeded, 1 failed, 2 cancelled, "
    "130 interrupted.",
)
def run_command(
    ctx: typer.Context,
    action: Annotated[
        str,
        typer.Argument(metavar="ACTION", help="the action to run (a key of config.yaml's actions)"),
    ],
    params: Annotated[str, typer.Argument(metavar="PARAMS", help="a JSON object, or @file.json")],
    path: Annotated[
        Path, typer.Option("--path", help="the plugin directory (holding config.yaml)")
    ] = Path("."),
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="run in this process, without Kafka, showing tracebacks in full"
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="follow the submitted run to its end (mesh runs)"),
    ] = True,
) -> None:
    directory = path.expanduser().resolve()
    try:
        values = parse_params(params, source="PARAMS")
    except CliError as exc:
        fail(str(exc))
    if debug:
        code = _run_here(ctx, directory, action, values)
    else:
        code = _run_on_mesh(ctx, directory, action, values, wait=wait)
    raise typer.Exit(code)


def _run_here(ctx: typer.Context, directory: Path, action: str, values: dict[str, Any]) -> int:
    try:
        plugin, loaded, params = prepare_debug_run(directory, action, values)
    except RunmeshError as exc:
        fail(str(exc))
    settings = load_settings(options=ctx.obj)
    with needs_dev_extra("plugin run --debug"):
        return run_async(debug_run(plugin, loaded, params, settings, Console(stderr=True)))


def _run_on_mesh(
    ctx: typer.Context, directory: Path, action: str, values: dict[str, Any], *, wait: bool
) -> int:
    try:
        body = mesh_request(directory, action, values)
    except RunmeshError as exc:
        fail(str(exc))
    return run_async(
        submit(
            load_settings(options=ctx.obj),
            body,
            wait=wait,
            console=Console(),
            debug=ctx.obj.verbose,
        )
    )


def mesh_request(directory: Path, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The `POST /v1/runs` body running `action` of the plugin version in `directory`."""
    from runmesh.plugins.config import load_config

    config = load_config(directory)
    if action not in config.actions:
        # Checked here: the gateway would say the same, but only once the version is known.
        known = ", ".join(sorted(config.actions))
        raise CliError(f"{directory}/config.yaml has no action {action!r}; its actions: {known}")
    return {
        "category": config.category,
        "plugin": f"{config.code}@{config.version}",
        "action": action,
        "params": params,
    }


def prepare_debug_run(
    directory: Path, action: str, params: dict[str, Any]
) -> tuple[LoadedPlugin, LoadedAction, BaseModel]:
    """Load the plugin, pick `action` and validate `params` as a worker does; a `RunmeshError`
    says what is wrong (invalid params: one line per field)."""
    from pydantic import ValidationError

    from runmesh.core.validation import describe_errors
    from runmesh.plugins.loader import load_plugin

    plugin = load_plugin(directory)
    loaded = plugin.action(action)
    if loaded.method == "restapi":
        raise CliError(
            f"action {action!r} of {plugin.ref} is a restapi action: it is served over HTTP, "
            "not run as a run"
        )
    try:
        validated = loaded.cls.params_model.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        lines = [f"  {describe_errors([error], root='(params)')}" for error in errors]
        raise CliError("\n".join([f"invalid params for {plugin.ref} {action}:", *lines])) from None
    return plugin, loaded, validated


async def debug_run(
    plugin: LoadedPlugin,
    action: LoadedAction,
    params: BaseModel,
    settings: Settings,
    console: Console,
) -> int:
    """Run the action here as a worker's `task` does, its reports shown on `console` and its
    result printed on stdout; return the exit status."""
    import asyncio

    from runmesh.execution import StopSignal, execute_task
    from runmesh.plugins.run import Run, RunContext

    cancel_flag = threading.Event()
    stop = StopSignal()
    report = TerminalReport(console)
    run = Run.for_action(
        action.cls,
        run_id=uuid.uuid4(),
        attempt=1,
        sink=report,
        cancel_flag=cancel_flag,
        progress_interval_s=settings.progress_interval_s,
        context=RunContext(
            tenant=settings.tenant,
            category=plugin.config.category,
            settings=settings,
            plugin=plugin.code,
            plugin_version=plugin.version,
        ),
    )
    where = "in this process" if action.method == "task" else "in this process, not as a job"
    report.note(f"running {plugin.ref} {action.name} {where} (--debug: no Kafka)", "dim")
    loop = asyncio.get_running_loop()
    quit_now: asyncio.Future[None] = loop.create_future()

    def on_interrupt() -> None:
        if not stop.requested:
            report.note("cancelling (Ctrl-C again to quit at once)", "yellow")
            stop.request("cancel", "interrupted with Ctrl-C")
        elif not quit_now.done():
            quit_now.set_result(None)

    with report, _sigint_calls(loop, on_interrupt):
        work = asyncio.create_task(
            execute_task(
                action.cls,
                params,
                run,
                cancel_flag,
                stop,
                grace_s=settings.cancel_grace_s,
                progress_interval_s=settings.progress_interval_s,
            )
        )
        either: set[asyncio.Future[Any]] = {work, quit_now}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            # A sync action's thread is a daemon: it ends with the process, now.
            report.note("interrupted; the action was abandoned", "yellow")
            return EXIT_INTERRUPTED
    return show_outcome(work.result(), console, max_bytes=settings.max_message_bytes)


def show_outcome(outcome: Outcome, console: Console, *, max_bytes: int) -> int:
    """Print the result JSON on stdout, or the failure (with its traceback) or cancellation on
    `console`; return the exit status."""
    from runmesh.execution import Cancelled, Succeeded

    if isinstance(outcome, Succeeded):
        text = result_json(outcome.result, max_bytes=max_bytes)
        if isinstance(text, str):
            typer.echo(text)
            return EXIT_CODES["succeeded"]
        outcome = text
    if isinstance(outcome, Cancelled):
        print_line(console, f"run was cancelled: {outcome.reason}", "yellow")
        return EXIT_CODES["cancelled"]
    if outcome.traceback:
        print_line(console, outcome.traceback.rstrip())
    print_line(console, f"run failed: {outcome.error_type}: {outcome.message}", "bold red")
    return EXIT_CODES["failed"]


def result_json(result: dict[str, Any], *, max_bytes: int) -> str | Failed:
    """The result as indented JSON, or the failure a worker would end the run with instead."""
    from pydantic_core import PydanticSerializationError

    from runmesh.core.events import SucceededPayload
    from runmesh.execution import Failed

    try:
        # Through the wire model, as a worker sends it: what it cannot send fails here too.
        data = SucceededPayload(result=result).model_dump(mode="json")["result"]
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        return Failed("InvalidResult", f"the result is not JSON data ({exc})")
    if len(text) > max_bytes:
        return Failed(
            "InvalidResult",
            f"the result is {len(text)} bytes, over RUNMESH_MAX_MESSAGE_BYTES ({max_bytes}): "
            "a worker would fail this run; write large results to object storage and return "
            "their URI",
        )
    return text.decode()


class TerminalReport:
    """A `RunSink` that shows an action's reports instead of publishing them: live bars per
    progress category when the console is a terminal, one line per report elsewhere.

    `emit` is called from the action's thread (sync actions) or the loop (async ones).
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._closed = False
        self._progress = live_bars(console)
        self._bars: dict[str, TaskID] = {}
        self._shown: dict[str, tuple[float, float | None]] = {}

    def __enter__(self) -> TerminalReport:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            # An action left running after a stop may still report: nothing more is shown.
            self._closed = True
            if self._progress is not None:
                self._progress.stop()

    def emit(self, event_type: str, payload: EventPayload) -> None:
        """Show one report of the action."""
        from runmesh.core.events import ArtifactPayload, LogPayload, MetricPayload, ProgressPayload

        with self._lock:
            if self._closed:
                return
            if isinstance(payload, ProgressPayload):
                self._show_progress(payload)
            elif isinstance(payload, LogPayload):
                self._print(format_log(payload), LEVEL_STYLES.get(payload.level, ""))
            elif isinstance(payload, MetricPayload):
                self._print(format_metric(payload), "cyan")
            elif isinstance(payload, ArtifactPayload):
                self._print(format_artifact(payload), "magenta")
            else:
                self._print(f"[{event_type}] {payload.model_dump_json()}")

    def note(self, text: str, style: str = "") -> None:
        """Print a line of our own between the reports."""
        with self._lock:
            self._print(text, style)

    def _show_progress(self, payload: ProgressPayload) -> None:
        value = (payload.current, payload.total)
        if self._shown.get(payload.category) == value:
            return  # a repeated value says nothing new
        self._shown[payload.category] = value
        if self._progress is None:
            self._print(format_progress(payload))
            return
        bar = self._bars.get(payload.category)
        if bar is None:
            bar = self._bars[payload.category] = self._progress.add_task(
                payload.category, total=payload.total
            )
        self._progress.update(bar, completed=payload.current, total=payload.total)

    def _print(self, text: str, style: str = "") -> None:
        # While live, the bars' console prints above them (it is the same console).
        print_line(self._console, text, style)


def format_progress(payload: ProgressPayload) -> str:
    """`[category] current/total`, or `[category] current` without a total."""
    total = "" if payload.total is None else f"/{payload.total:g}"
    return f"[{payload.category}] {payload.current:g}{total}"


def format_log(payload: LogPayload) -> str:
    """`[level CODE] message {data}`: the code and data only when there are some."""
    head = payload.level if payload.code is None else f"{payload.level} {payload.code}"
    data = f" {_json(payload.data)}" if payload.data else ""
    return f"[{head}] {payload.message}{data}"


def format_metric(payload: MetricPayload) -> str:
    """`[metric category] name=value … (step N)`."""
    values = " ".join(f"{name}={value:g}" for name, value in payload.values.items())
    step = "" if payload.step is None else f" (step {payload.step})"
    return f"[metric {payload.category}] {values}{step}"


def format_artifact(payload: ArtifactPayload) -> str:
    """`[artifact] name: uri (size, media type, checksum)`."""
    details = [
        f"{payload.size} bytes" if payload.size is not None else "",
        payload.media_type or "",
        payload.checksum or "",
    ]
    extra = ", ".join(detail for detail in details if detail)
    return f"[artifact] {payload.name}: {payload.uri}" + (f" ({extra})" if extra else "")


def _json(data: dict[str, Any]) -> str:
    # default=str: log data is free-form, and a line of it must never fail the run.
    return orjson.dumps(data, default=str).decode()


@contextlib.contextmanager
def _sigint_calls(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` on the loop for each Ctrl-C while inside, instead of interrupting."""
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        # Windows, or not the main thread: Ctrl-C stays a KeyboardInterrupt (exit status 130).
        installed = False
    else:
        installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
