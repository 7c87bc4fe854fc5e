"""How an attempt ended, before it becomes a terminal event."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from runmesh.core.errors import RunCancelledError
from runmesh.core.events import LogPayload
from runmesh.core.validation import describe_errors


@dataclass(slots=True, frozen=True)
class Succeeded:
    """The action returned `result`."""

    result: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Failed:
    """The action or the runtime failed the attempt."""

    error_type: str
    message: str
    traceback: str | None = None
    retryable: bool = False


@dataclass(slots=True, frozen=True)
class Cancelled:
    """The attempt stopped on request."""

    reason: str


Outcome = Succeeded | Failed | Cancelled


def result_outcome(result: object) -> Outcome:
    """Turn what `start()` returned into an outcome; anything but a mapping or model fails."""
    if result is None:
        return Succeeded({})
    if isinstance(result, BaseModel):
        return Succeeded(result.model_dump(mode="json"))
    if isinstance(result, Mapping):
        return Succeeded({str(key): value for key, value in result.items()})
    return Failed(
        "InvalidResult",
        f"start() must return a mapping or a pydantic model, not {type(result).__name__}",
    )


def exception_outcome(exc: BaseException) -> Outcome:
    """Turn an exception raised by an action into an outcome, with its traceback."""
    if isinstance(exc, RunCancelledError):
        return Cancelled(str(exc) or "cancelled")
    return Failed(
        error_type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        traceback="".join(traceback.format_exception(exc)),
        retryable=bool(getattr(exc, "retriable", False)),
    )


def invalid_params(ref: str, action: str, exc: ValidationError) -> tuple[LogPayload, Failed]:
    """The error log (every field's error, for the run page) and the failure of a run whose
    params do not validate; the same wherever the params are checked (worker or job)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    log = LogPayload(level="error", message="invalid params", data={"errors": errors})
    summary = describe_errors(errors, root="(params)")
    return log, Failed("ValidationError", f"invalid params for {ref} {action}: {summary}")
