"""Show one run's events to a person: progress bars per category, logs, the outcome."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from runmesh.core.events import RunEvent

# Every `runmesh` invocation imports this module: rich's progress bars and the events (pydantic
# models) are imported where they are used, to keep `runmesh --help` fast.

LEVEL_STYLES = {
    # rich styles of run.log levels, wherever a run's logs are shown
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "bold red",
    "success": "green",
}
_BAR_WIDTH = 30


def live_bars(console: Console, *, indent: str = "") -> Progress | None:
    """Live progress bars (category, bar, percent, done/total, ETA) on a terminal; None
    elsewhere, where callers print progress as lines."""
    if not console.is_terminal:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(indent + "{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class RunRenderer:
    """Live progress bars on a terminal; plain lines (every quarter of progress) elsewhere.
    Debug log lines are counted, not shown, unless `debug`."""

    def __init__(self, console: Console, *, debug: bool = False) -> None:
        self._console = console
        self._debug = debug
        self._hidden = 0  # debug log lines not shown
        self._live = console.is_terminal
        self._progress = live_bars(console, indent="  ")
        self._bars: dict[str, TaskID] = {}
        self._quarters: dict[str, int] = {}

    def __enter__(self) -> RunRenderer:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._hidden:
            lines = "line" if self._hidden == 1 else "lines"
            self._print(f"  ({self._hidden} debug log {lines} hidden: -v shows them)", "dim")

    def show(self, event: RunEvent) -> None:
        """Render one event."""
        from runmesh.core.events import (
            RunCancelled,
            RunFailed,
            RunLog,
            RunProgress,
            RunStarted,
            RunSucceeded,
        )

        if isinstance(event, RunProgress):
            self._show_progress(event.payload.category, event.payload.current, event.payload.total)
        elif isinstance(event, RunLog):
            if event.payload.level == "debug" and not self._debug:
                self._hidden += 1
                return
            style = LEVEL_STYLES.get(event.payload.level, "")
            self._print(f"  [{event.payload.level}] {event.payload.message}", style)
        elif isinstance(event, RunStarted):
            self._print(f"  started on {event.worker} (attempt {event.attempt})", "dim")
        elif isinstance(event, RunSucceeded):
            self._print(f"run {event.run_id} succeeded: {event.payload.result}", "bold green")
        elif isinstance(event, RunFailed):
            failure = f"{event.payload.error_type}: {event.payload.message}"
            self._print(f"run {event.run_id} failed: {failure}", "bold red")
        elif isinstance(event, RunCancelled):
            self._print(f"run {event.run_id} was cancelled: {event.payload.reason}", "yellow")

    def note(self, text: str, style: str = "") -> None:
        """Print a line of our own between the events."""
        self._print(text, style)

    def _show_progress(self, category: str, current: float, total: float | None) -> None:
        if self._progress is not None:
            bar = self._bars.get(category)
            if bar is None:
                bar = self._bars[category] = self._progress.add_task(category, total=total)
            self._progress.update(bar, completed=current, total=total)
            return
        quarter = int(4 * current / total) if total else 0
        if self._quarters.get(category) == quarter:
            return
        self._quarters[category] = quarter
        self._print(f"  {category}: {_text_bar(current, total)}")

    def _print(self, text: str, style: str = "") -> None:
        console = self._progress.console if self._progress is not None else self._console
        print_line(console, text, style)


def print_line(console: Console, text: str, style: str = "") -> None:
    """One line of a run's report: kept one line (greppable) on any width by soft_wrap, and
    printed as data (no markup: a log line may contain brackets)."""
    console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)


def _text_bar(current: float, total: float | None) -> str:
    if not total:
        return f"{current:g}"
    done = min(1.0, current / total)
    filled = round(done * _BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done:4.0%} {current:g}/{total:g}"
