"""The `run` object an action reports through: logs, progress, metrics, artifacts, cancel."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from runmesh.core.errors import RunCancelledError
from runmesh.core.events import (
    ArtifactPayload,
    EventPayload,
    LogLevel,
    LogPayload,
    MetricPayload,
    ProgressPayload,
)
from runmesh.core.settings import Settings
from runmesh.plugins.progress import ProgressCoalescer, ProgressUpdate

DEFAULT_PROGRESS_CATEGORY = "default"


class ActionLike(Protocol):
    """What a `Run` needs to know of an action class (`Action` has it; no import cycle)."""

    progress_categories: ClassVar[Mapping[str, Any]]
    metrics_categories: ClassVar[Mapping[str, Any]]
    log_messages: ClassVar[Mapping[str, Mapping[str, str]]]


class RunSink(Protocol):
    """Where a `Run` sends what the action reports (the worker's emitter or a job's pipe)."""

    def emit(self, event_type: str, payload: EventPayload) -> None:
        """Deliver one event payload; may block briefly to apply back-pressure."""


@dataclass(slots=True, frozen=True)
class RunContext:
    """The platform side of a run: its tenant and category, and the settings that reach
    PostgreSQL and S3. Picklable, so a `job` child gets the same context as a `task`."""

    tenant: str = "default"
    category: str = ""
    settings: Settings | None = None
    plugin: str = ""  # code of the plugin running the action (what a trained model records)
    plugin_version: str = ""
    workspace: str = ""
    """A pipeline step's workspace: the key prefix of the platform bucket that every step of
    its pipeline run reads and writes (`runs/<tenant>/<run>/workspace/`); "" outside one."""


class Run:
    """What an action sees of its run; the same API in-process (`task`) and in a `job`.

    Methods are synchronous and thread-safe so both sync actions (run in a thread) and async
    actions (on the loop) call them the same way.
    """

    def __init__(
        self,
        *,
        run_id: uuid.UUID,
        attempt: int,
        sink: RunSink,
        cancel_flag: threading.Event | None = None,
        progress_categories: Mapping[str, Any] | None = None,
        metrics_categories: Mapping[str, Any] | None = None,
        log_messages: Mapping[str, Mapping[str, str]] | None = None,
        progress_interval_s: float = 0.2,
        context: RunContext | None = None,
        shutdown_flag: threading.Event | None = None,
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.context = context or RunContext()
        """Whose run it is and how to reach the platform (built-in plugins use it)."""
        self._sink = sink
        self._cancel = cancel_flag or threading.Event()
        self._shutdown = shutdown_flag or threading.Event()
        self._progress_categories = dict(progress_categories or {})
        self._metrics_categories = dict(metrics_categories or {})
        self._log_messages = dict(log_messages or {})
        self._coalescer = ProgressCoalescer(progress_interval_s)

    @classmethod
    def for_action(
        cls,
        action_cls: type[ActionLike],
        *,
        run_id: uuid.UUID,
        attempt: int,
        sink: RunSink,
        cancel_flag: threading.Event,
        progress_interval_s: float,
        context: RunContext | None = None,
        shutdown_flag: threading.Event | None = None,
    ) -> Run:
        """The `run` of one attempt of `action_cls`, with the categories and codes it declares."""
        return cls(
            context=context,
            shutdown_flag=shutdown_flag,
            run_id=run_id,
            attempt=attempt,
            sink=sink,
            cancel_flag=cancel_flag,
            progress_categories=action_cls.progress_categories,
            metrics_categories=action_cls.metrics_categories,
            log_messages=action_cls.log_messages,
            progress_interval_s=progress_interval_s,
        )

    # -- logs ---------------------------------------------------------------------------------
    def log_message(self, message: str, level: LogLevel = "info", **data: Any) -> None:
        """A human-readable log line (Synapse's `run.log_message`)."""
        self._send_log(LogPayload(level=level, message=str(message), data=data))

    def log(
        self, event: str, data: Mapping[str, Any] | None = None, level: LogLevel = "info"
    ) -> None:
        """A structured log record named `event` with its data (Synapse's `run.log`)."""
        self._send_log(LogPayload(level=level, message=event, data=dict(data or {})))

    def log_message_with_code(
        self, code: str, *args: Any, level: LogLevel | None = None, **kwargs: Any
    ) -> None:
        """Log a message the action declared in `log_messages` under `code`.

        The declared message is a `str.format` template: `{}` takes `args`, `{name}` `kwargs`.
        """
        spec = self._log_messages.get(code)
        if spec is None:
            known = ", ".join(sorted(self._log_messages)) or "none"
            raise ValueError(f"unknown log code {code!r}; declared codes: {known}")
        template = spec.get("message", code)
        try:
            message = template.format(*args, **kwargs)
        except (IndexError, KeyError) as exc:
            raise ValueError(f"log code {code!r} expects other arguments: {exc}") from exc
        chosen: Any = level or spec.get("level", "info")
        self._send_log(LogPayload(level=chosen, message=message, code=code))

    # -- progress and metrics -----------------------------------------------------------------
    def set_progress(
        self, current: float, total: float | None, category: str | None = None
    ) -> None:
        """Report `current` of `total` in a progress category (coalesced, last value kept)."""
        name = self._progress_category(category)
        update = self._coalescer.offer(ProgressUpdate(name, float(current), _opt(total)))
        if update is not None:
            self._send_progress(update)

    def set_metrics(
        self, values: Mapping[str, float], category: str, step: int | None = None
    ) -> None:
        """Report named numeric values in a metrics category, optionally at a step (epoch)."""
        if self._metrics_categories and category not in self._metrics_categories:
            known = ", ".join(sorted(self._metrics_categories))
            raise ValueError(f"metrics category {category!r} is not declared; declared: {known}")
        numbers = {str(k): float(v) for k, v in values.items()}
        self._flush_due()
        self._sink.emit("run.metric", MetricPayload(category=category, values=numbers, step=step))

    def log_artifact(
        self,
        name: str,
        uri: str,
        *,
        size: int | None = None,
        checksum: str | None = None,
        media_type: str | None = None,
        type: str | None = None,
        serializer: str | None = None,
    ) -> None:
        """Announce a file the run wrote (by URI: the bytes live in object storage); a typed
        artifact (`runmesh.plugins.artifacts.save_artifact`) also says its type and the
        serializer that reads it back."""
        self._flush_due()
        self._sink.emit(
            "run.artifact",
            ArtifactPayload(
                name=name,
                uri=uri,
                size=size,
                checksum=checksum,
                media_type=media_type,
                type=type,
                serializer=serializer,
            ),
        )

    def flush_progress(self, *, force: bool = False) -> None:
        """Send progress held back by coalescing: what is due, or everything with `force`."""
        updates = self._coalescer.drain() if force else self._coalescer.due()
        for update in updates:
            self._send_progress(update)

    # -- cancellation -------------------------------------------------------------------------
    @property
    def is_cancelled(self) -> bool:
        """True once cancellation (or a timeout) was requested; stop at the next safe point."""
        return self._cancel.is_set()

    @property
    def will_be_retried(self) -> bool:
        """True when the stop is a worker shutdown: another attempt will redo the run, so an
        action should keep what it wrote (for it to resume) rather than roll it back."""
        return self._shutdown.is_set()

    def mark_shutdown(self) -> None:
        """Called by the runtime before it stops the attempt for a worker shutdown."""
        self._shutdown.set()

    def check_cancelled(self) -> None:
        """Raise `RunCancelledError` if cancellation was requested: call it between items."""
        if self._cancel.is_set():
            raise RunCancelledError("run was cancelled")

    # -- internals ----------------------------------------------------------------------------
    def _progress_category(self, category: str | None) -> str:
        if category is None:
            return next(iter(self._progress_categories), DEFAULT_PROGRESS_CATEGORY)
        if self._progress_categories and category not in self._progress_categories:
            known = ", ".join(sorted(self._progress_categories))
            raise ValueError(f"progress category {category!r} is not declared; declared: {known}")
        return category

    def _send_log(self, payload: LogPayload) -> None:
        self._flush_due()
        self._sink.emit("run.log", payload)

    def _send_progress(self, update: ProgressUpdate) -> None:
        self._sink.emit(
            "run.progress",
            ProgressPayload(category=update.category, current=update.current, total=update.total),
        )

    def _flush_due(self) -> None:
        # Progress held back must not fall behind a later log or metric in the stream.
        for update in self._coalescer.due():
            self._send_progress(update)


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)
