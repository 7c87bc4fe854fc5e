"""Process logs an operator can search (docs/operations.md "Logs"): JSON records with the
service, and on every record written while a run is handled its run id, tenant and attempt
and its trace and span ids; plain text on a terminal.

The run's fields come from a context variable the worker sets in the task that handles the
run (`bind_run`): asyncio copies it into that task's callbacks and threads
(`asyncio.to_thread`), so a line logged by an in-process action carries them too, and a line
of another run's task never does.
"""

from __future__ import annotations

import logging
import sys
import uuid
from contextvars import ContextVar
from typing import Any, Final, Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["auto", "json", "text"]
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_RUN: ContextVar[dict[str, Any] | None] = ContextVar("runmesh_log_run", default=None)


def bind_run(run_id: uuid.UUID, *, tenant: str | None, attempt: int) -> None:
    """Tag every record the current task (and what it starts) logs from now on with the run;
    call it in the task that handles the run, which ends with it."""
    _RUN.set({"run_id": str(run_id), "tenant": tenant, "attempt": attempt})


class RunContextFilter(logging.Filter):
    """Adds `service`, the bound run's `run_id`, `tenant` and `attempt`, and the current
    span's `trace_id` and `span_id` to each record (fields absent when unknown)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        run = _RUN.get()
        if run is not None:
            for key, value in run.items():
                setattr(record, key, value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: `ts`, `level`, `logger`, `message`, then the context fields
    and any `extra`; an exception's traceback as `exc_info`."""
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure_logging(
    service: str, log_format: LogFormat = "auto", level: int = logging.INFO
) -> logging.Handler:
    """Log to stderr in `log_format` (`auto`: text on a terminal, else JSON) with the run and
    trace context; replaces the root logger's handlers. Returns the handler."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if as_json else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RunContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
