"""What a job and its worker say to each other over the job's pipe, as bytes.

A job may run a tenant's code, so the worker reads nothing from it that could act on its own:
no pickle (unpickling runs code), only frames of JSON and raw bytes, each bounded and validated
into a typed message before the worker touches it. A frame is a 4-byte big-endian header
length, the header (a JSON object) and a body (raw bytes, e.g. a chunk of a file).

Job → worker: `event` (a report of the action: started, progress, log, metric, artifact; the
terminal events are the worker's to publish), `outcome` (how the attempt ended, once, last)
and `call` (a request to the worker's storage broker). Worker → job: `reply` to a call.
An `outcome` also carries the job's request-level retries, which the worker adds to its own
count only for a job it runs unconfined (a confined job's storage calls are the broker's).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import BaseModel, ValidationError

from runmesh.core.events import (
    ArtifactPayload,
    EventPayload,
    LogPayload,
    MetricPayload,
    ProgressPayload,
    StartedPayload,
)
from runmesh.execution.outcome import Cancelled, Failed, Outcome, Succeeded

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""The largest frame either side sends or accepts: a file chunk of the broker (8 MiB) or an
event (bounded far lower by RUNMESH_MAX_MESSAGE_BYTES) with room to spare."""

_MAX_HEADER_BYTES = MAX_FRAME_BYTES
_MAX_NAME = 256
_MAX_MESSAGE = 64 * 1024  # a failure's message and traceback are cut to these, never refused
_MAX_TRACEBACK = 256 * 1024
_LENGTH = struct.Struct(">I")
_MAX_RETRY_KEYS = 64
#: An operation (`s3.upload_part`) or an error type (`StorageUnavailable`) in the retry count.
_RETRY_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")

JOB_EVENT_PAYLOADS: dict[str, type[BaseModel]] = {
    "run.started": StartedPayload,
    "run.progress": ProgressPayload,
    "run.log": LogPayload,
    "run.metric": MetricPayload,
    "run.artifact": ArtifactPayload,
}
"""The events a job may report, with their payload models."""


class JobProtocolError(Exception):
    """The other side of a job's pipe sent something that is not a valid message."""


@dataclass(slots=True, frozen=True)
class EventMessage:
    """A report of the action."""

    event_type: str
    payload: EventPayload


@dataclass(slots=True, frozen=True)
class OutcomeMessage:
    """How the attempt ended, and the request-level retries the job made meanwhile."""

    outcome: Outcome
    retries: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class CallMessage:
    """A call to the worker's storage broker; answered by a reply with the same id."""

    call_id: int
    op: str
    args: dict[str, Any]
    body: bytes


@dataclass(slots=True, frozen=True)
class ReplyMessage:
    """The worker's answer to a call: a result, or an error type and message."""

    call_id: int
    result: dict[str, Any] | None
    body: bytes
    error_type: str | None = None
    message: str = ""
    details: dict[str, str] | None = None


JobMessage = EventMessage | OutcomeMessage | CallMessage


def encode_frame(header: dict[str, Any], body: bytes | memoryview = b"") -> bytes:
    """One frame: the header as JSON (values pydantic can serialise) and the raw body."""
    data = pydantic_core.to_json(header)
    frame = b"".join((_LENGTH.pack(len(data)), data, body))
    if len(frame) > MAX_FRAME_BYTES:
        raise JobProtocolError(f"a message of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    return frame


def _split(frame: bytes) -> tuple[dict[str, Any], bytes]:
    if len(frame) < _LENGTH.size:
        raise JobProtocolError("a frame shorter than its length prefix")
    (size,) = _LENGTH.unpack_from(frame)
    if size > _MAX_HEADER_BYTES or _LENGTH.size + size > len(frame):
        raise JobProtocolError("a frame whose header length exceeds the frame")
    try:
        header = pydantic_core.from_json(frame[_LENGTH.size : _LENGTH.size + size])
    except ValueError as exc:
        raise JobProtocolError(f"a frame header that is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise JobProtocolError("a frame header that is not a JSON object")
    return header, frame[_LENGTH.size + size :]


def event_frame(event_type: str, payload: EventPayload) -> bytes:
    """An `event` frame."""
    return encode_frame(
        {"kind": "event", "type": event_type, "payload": payload.model_dump(mode="json")}
    )


def outcome_frame(outcome: Outcome, retries: Mapping[tuple[str, str], int] | None = None) -> bytes:
    """An `outcome` frame, with the job's `retries` (operation, error) -> count."""
    if isinstance(outcome, Succeeded):
        header: dict[str, Any] = {
            "kind": "outcome",
            "status": "succeeded",
            "result": outcome.result,
        }
    elif isinstance(outcome, Cancelled):
        header = {"kind": "outcome", "status": "cancelled", "reason": outcome.reason[:_MAX_MESSAGE]}
    else:
        traceback = outcome.traceback
        header = {
            "kind": "outcome",
            "status": "failed",
            "error_type": outcome.error_type[:_MAX_NAME],
            "message": outcome.message[:_MAX_MESSAGE],
            "traceback": None if traceback is None else traceback[-_MAX_TRACEBACK:],
            "retryable": outcome.retryable,
        }
    if retries:
        header["retries"] = [[op, error, count] for (op, error), count in retries.items()][
            :_MAX_RETRY_KEYS
        ]
    return encode_frame(header)


def call_frame(call_id: int, op: str, args: dict[str, Any], body: bytes = b"") -> bytes:
    """A `call` frame."""
    return encode_frame({"kind": "call", "id": call_id, "op": op, "args": args}, body)


def reply_frame(
    call_id: int,
    result: dict[str, Any] | None,
    body: bytes = b"",
    *,
    error_type: str | None = None,
    message: str = "",
    details: dict[str, str] | None = None,
) -> bytes:
    """A `reply` frame: `result` (and `body`), or `error_type`, `message` and `details`."""
    header: dict[str, Any] = {"kind": "reply", "id": call_id}
    if error_type is None:
        header["result"] = result or {}
    else:
        header["error"] = {"type": error_type, "message": message, "details": details or {}}
    return encode_frame(header, body)


def _text(header: dict[str, Any], key: str, limit: int = 256) -> str:
    value = header.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise JobProtocolError(f"{key!r} must be a string of at most {limit} characters")
    return value


def _call_id(header: dict[str, Any]) -> int:
    value = header.get("id")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise JobProtocolError("'id' must be a non-negative 64-bit integer")
    return value


def decode_job_message(frame: bytes) -> JobMessage:
    """A job's frame as a typed, validated message (JobProtocolError if it is not one)."""
    header, body = _split(frame)
    kind = header.get("kind")
    if kind == "event":
        event_type = _text(header, "type")
        model = JOB_EVENT_PAYLOADS.get(event_type)
        if model is None:
            raise JobProtocolError(f"a job may not report {event_type!r}")
        try:
            payload = model.model_validate(header.get("payload"))
        except ValidationError as exc:
            raise JobProtocolError(f"an invalid {event_type} payload: {exc}") from None
        return EventMessage(event_type, payload)  # type: ignore[arg-type]  # one of EventPayload
    if kind == "outcome":
        return OutcomeMessage(_decode_outcome(header), _decode_retries(header.get("retries")))
    if kind == "call":
        args = header.get("args")
        if not isinstance(args, dict):
            raise JobProtocolError("'args' of a call must be a JSON object")
        return CallMessage(_call_id(header), _text(header, "op", 64), args, bytes(body))
    raise JobProtocolError(f"unknown message kind {kind!r}")


def _decode_outcome(header: dict[str, Any]) -> Outcome:
    status = header.get("status")
    if status == "succeeded":
        result = header.get("result")
        if not isinstance(result, dict):
            raise JobProtocolError("a succeeded outcome's 'result' must be a JSON object")
        return Succeeded(result)
    if status == "cancelled":
        return Cancelled(_text(header, "reason", _MAX_MESSAGE))
    if status == "failed":
        traceback = header.get("traceback")
        if traceback is not None and (
            not isinstance(traceback, str) or len(traceback) > _MAX_TRACEBACK
        ):
            raise JobProtocolError(f"'traceback' must be a string of at most {_MAX_TRACEBACK}")
        return Failed(
            error_type=_text(header, "error_type", _MAX_NAME),
            message=_text(header, "message", _MAX_MESSAGE),
            traceback=traceback,
            retryable=header.get("retryable") is True,
        )
    raise JobProtocolError(f"unknown outcome status {status!r}")


def _decode_retries(value: object) -> dict[tuple[str, str], int]:
    if value is None:
        return {}
    if not isinstance(value, list) or len(value) > _MAX_RETRY_KEYS:
        raise JobProtocolError(f"'retries' must be a list of at most {_MAX_RETRY_KEYS} entries")
    retries: dict[tuple[str, str], int] = {}
    for entry in value:
        match entry:
            case [str(op), str(error), int(count)] if (
                _RETRY_LABEL.fullmatch(op)
                and _RETRY_LABEL.fullmatch(error)
                and not isinstance(count, bool)
                and 0 < count <= 10**6
            ):
                retries[op, error] = count
            case _:
                raise JobProtocolError(f"an invalid 'retries' entry {str(entry)[:80]!r}")
    return retries


def decode_reply(frame: bytes) -> ReplyMessage:
    """The worker's reply frame (read by the job)."""
    header, body = _split(frame)
    if header.get("kind") != "reply":
        raise JobProtocolError(f"expected a reply, got {header.get('kind')!r}")
    error = header.get("error")
    if isinstance(error, dict):
        details = error.get("details")
        return ReplyMessage(
            _call_id(header),
            None,
            b"",
            error_type=str(error.get("type", "Error")),
            message=str(error.get("message", "")),
            details=(
                {str(k): str(v) for k, v in details.items()} if isinstance(details, dict) else None
            ),
        )
    result = header.get("result")
    if not isinstance(result, dict):
        raise JobProtocolError("a reply without a result or an error")
    return ReplyMessage(_call_id(header), result, bytes(body))
