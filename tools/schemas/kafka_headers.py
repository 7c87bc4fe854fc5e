"""The Kafka headers of the AsyncAPI document's messages: trace context, event type, and the
dead-letter reason."""

from __future__ import annotations

from typing import Final

from tools.schemas.json_schemas import JsonSchema

_TRACEPARENT_PATTERN: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def sort_keys(schema: JsonSchema) -> JsonSchema:
    """Sort a hand-written schema's keys recursively, as pydantic does with its own."""
    return {
        key: sort_keys(value) if isinstance(value, dict) else value
        for key, value in sorted(schema.items())
    }


def headers(
    *, event_type: str | None = None, sent_type: str | None = None, dead_letter: bool = False
) -> JsonSchema:
    """Kafka headers of a message (UTF-8 strings): W3C trace context, event type, DLQ reason.

    `event_type` is the header's fixed value (run events); `sent_type` the value runmesh's own
    producers send where other producers may leave the header out.
    """
    copied = " Copied from the original record." if dead_letter else ""
    properties: JsonSchema = {
        "traceparent": {
            "description": (
                "W3C Trace Context of the span that sent the record, so a run's trace starts "
                "at its submission. The gateway always sets it (with a new trace id when it "
                "has no active trace); other senders when a trace is active." + copied
            ),
            "pattern": _TRACEPARENT_PATTERN,
            "type": "string",
        },
        "tracestate": {
            "description": "W3C Trace Context vendor state, sent along with traceparent." + copied,
            "type": "string",
        },
    }
    required: list[str] = []
    if event_type is not None:
        properties["event-type"] = {
            "const": event_type,
            "description": "Equals the payload's `type`, for routing without decoding it.",
            "type": "string",
        }
        required.append("event-type")
    elif sent_type is not None:
        properties["event-type"] = {
            "description": (
                f"`{sent_type}` from runmesh's own producers, for routing without decoding "
                "the value; other producers may leave it out."
            ),
            "type": "string",
        }
    else:
        properties["event-type"] = {
            "description": "The message's type, for routing without decoding it." + copied,
            "type": "string",
        }
    if dead_letter:
        properties["reason"] = {
            "description": (
                "Why the record was dead-lettered: `undecodable` (the value is no valid "
                "`RunRequest`) or `max-attempts` (the run was started RUNMESH_MAX_ATTEMPTS "
                "times and ended failed with MaxAttemptsExceeded)."
            ),
            "enum": ["undecodable", "max-attempts"],
            "type": "string",
        }
        properties["reason-detail"] = {
            "description": (
                "For `undecodable`, the decode error (at most 1,000 characters); for "
                "`max-attempts`, `run was started <n> times`."
            ),
            "type": "string",
        }
        source = "only with reason `undecodable`"
        properties["source-topic"] = {
            "description": f"The requests topic the record was read from ({source}).",
            "type": "string",
        }
        properties["source-partition"] = {
            "description": f"Its partition, in decimal ({source}).",
            "pattern": "^[0-9]+$",
            "type": "string",
        }
        properties["source-offset"] = {
            "description": f"Its offset, in decimal ({source}).",
            "pattern": "^[0-9]+$",
            "type": "string",
        }
        required += ["reason", "reason-detail"]
    headers: JsonSchema = {"type": "object", "properties": properties}
    if required:
        headers["required"] = required
    return sort_keys(headers)
