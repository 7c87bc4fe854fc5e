"""Generate the JSON Schemas and the AsyncAPI document in `docs/` from the wire models.

`runmesh.common.events` stays the only place a wire field is named (CONVENTIONS 3): this
module only derives documents from it. `python -m runmesh.common.schemas [--check] [DIR]`
(re)writes `DIR/schemas/<Message>.schema.json` and `DIR/asyncapi.yaml`, or with `--check`
lists the stale ones and exits 1; a test runs the check against the committed `docs/`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import yaml
from pydantic import TypeAdapter

from runmesh.common.dm import DMData
from runmesh.common.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    CancelRun,
    PluginManifest,
    RunEvent,
    RunRequest,
)
from runmesh.common.topics import Topics

JsonSchema: TypeAlias = dict[str, Any]  # JSON Schema and AsyncAPI documents are free-form JSON

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
ASYNCAPI_FILE: Final = "asyncapi.yaml"
SCHEMAS_DIR: Final = "schemas"

# Readers validate what they receive, so the schemas describe what `decode` accepts:
# "validation" mode leaves fields with defaults optional, so a record from an older or a
# foreign producer that omits them is still valid. "serialization" mode would describe only
# what our own encoder happens to write.
SCHEMA_MODE: Final[Literal["validation"]] = "validation"

# Every message on the wire, in the order the documents list them. The values are a mix of
# model classes and the `RunEvent` Annotated union, which share no static type: hence Any.
_MESSAGE_TYPES: Final[dict[str, Any]] = {
    "RunRequest": RunRequest,
    "RunEvent": RunEvent,
    "CancelRun": CancelRun,
    "PluginManifest": PluginManifest,
}
_RUN_EVENT_DESCRIPTION: Final = "Any run event, discriminated by `type`."
_GENERATED_NOTE: Final = (
    "Generated from runmesh.common.events by `make schemas`; do not edit by hand."
)

_DEFS_PREFIX: Final = "#/$defs/"
_COMPONENT_SCHEMAS: Final = "#/components/schemas/"
# Keywords whose value is data, not a schema: never rewritten.
_DATA_KEYWORDS: Final = frozenset({"const", "default", "enum", "examples"})
# Keywords whose value maps names (not keywords) to schemas.
_SCHEMA_MAPS: Final = frozenset(
    {"$defs", "definitions", "properties", "patternProperties", "dependentSchemas"}
)

_TRACEPARENT_PATTERN: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def message_schemas() -> dict[str, JsonSchema]:
    """The standalone JSON Schema (draft 2020-12) of every message, by message name."""
    schemas: dict[str, JsonSchema] = {}
    for name, message_type in _MESSAGE_TYPES.items():
        body = TypeAdapter[Any](message_type).json_schema(mode=SCHEMA_MODE)
        body.setdefault("title", name)
        if name == "RunEvent":
            body.setdefault("description", _RUN_EVENT_DESCRIPTION)
            _require_discriminator(body)
        # pydantic already sorts nested keys (keeping `properties` in field order).
        schemas[name] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$comment": _GENERATED_NOTE,
            **dict(sorted(body.items())),
        }
    return schemas


def _require_discriminator(union: JsonSchema) -> None:
    """Make the union's schema require its tag, as pydantic's discriminated union does.

    Each member's own schema leaves `type` optional (it has a default), but `decode_event`
    rejects a record without it; without this a JSON Schema reader would accept it.
    """
    tag = union["discriminator"]["propertyName"]
    mapping: dict[str, str] = union["discriminator"]["mapping"]
    for ref in mapping.values():
        member = union["$defs"][ref.removeprefix(_DEFS_PREFIX)]
        member["required"] = sorted({*member.get("required", ()), tag}, key=_field_order(member))
    # AsyncAPI also wants the discriminator defined and required at the union itself.
    union["type"] = "object"
    union["properties"] = {tag: {"enum": list(mapping), "type": "string"}}
    union["required"] = [tag]


def _field_order(schema: JsonSchema) -> Callable[[str], int]:
    """Sort key putting names in the order of the schema's `properties` (field order)."""
    order = {name: index for index, name in enumerate(schema.get("properties", {}))}
    return lambda name: order.get(name, len(order))


def asyncapi_document(topics: Topics | None = None) -> JsonSchema:
    """The AsyncAPI 3.0.0 document of every runmesh topic (DESIGN §3), keys in a stable order.

    Topic addresses come from `topics` (default prefix `runmesh`). Schemas are the ones of
    `message_schemas`, their `$defs` moved to `components/schemas`.
    """
    topics = topics or Topics()
    schemas = _component_schemas(message_schemas())
    messages = _messages()
    event_messages = [model.__name__ for model in EVENT_TYPES.values()]
    channels: JsonSchema = {
        "requests": {
            "address": topics.requests("{category}"),
            "title": "Run requests",
            "description": (
                "Requests to run a plugin action, one topic per service category. Written "
                "by the gateway's outbox relay or by any Kafka producer; keyed by run_id, "
                "which is also the idempotency key."
            ),
            "parameters": {"category": _category_parameter()},
            "messages": _channel_messages(["RunRequest"]),
        },
        "requestsDeadLetter": {
            "address": topics.dlq("{category}"),
            "title": "Dead-lettered run requests",
            "description": (
                "Records of a requests topic that could not be decoded, and requests that "
                "were started RUNMESH_MAX_ATTEMPTS times, copied byte for byte with a "
                "`reason` header."
            ),
            "parameters": {"category": _category_parameter()},
            "messages": _channel_messages(["DeadLetteredRequest"]),
        },
        "events": {
            "address": topics.events,
            "title": "Run events",
            "description": (
                "Every run event of every service, keyed by run_id: a run's events keep "
                "their order within its partition. `seq` is gapless per run and attempt; "
                "delivery is at-least-once, so readers deduplicate by `event_id`."
            ),
            "messages": _channel_messages(event_messages),
        },
        "control": {
            "address": topics.control,
            "title": "Run control",
            "description": (
                "Cancellation requests. Every worker reads the whole topic; the one running "
                "the run stops it and emits `run.cancelled`."
            ),
            "messages": _channel_messages(["CancelRun"]),
        },
        "plugins": {
            "address": topics.plugins,
            "title": "Plugin manifests",
            "description": (
                "The plugin versions available: workers announce theirs at start, the "
                "gateway the archives published through it."
            ),
            "messages": _channel_messages(["PluginManifest"]),
        },
    }
    operations: JsonSchema = {
        "sendRunRequest": _operation(
            "send",
            "requests",
            ["RunRequest"],
            ["gateway"],
            "Submit a run: the gateway's outbox relay, or any Kafka producer.",
        ),
        "receiveRunRequest": _operation(
            "receive",
            "requests",
            ["RunRequest"],
            ["worker"],
            "The category's service runs the request; its replicas share the partitions "
            "through one consumer group.",
        ),
        "sendDeadLetteredRequest": _operation(
            "send",
            "requestsDeadLetter",
            ["DeadLetteredRequest"],
            ["worker"],
            "A service dead-letters a request it cannot decode or has started too often.",
        ),
        "sendRunEvent": _operation(
            "send",
            "events",
            event_messages,
            ["worker"],
            "A service reports a run's start, progress, logs, metrics, artifacts and end.",
        ),
        "receiveRunEvent": _operation(
            "receive",
            "events",
            event_messages,
            ["gateway"],
            "The gateway's aggregator turns events into run state and streams them over SSE.",
        ),
        "sendCancelRun": _operation(
            "send",
            "control",
            ["CancelRun"],
            ["gateway"],
            "The gateway asks for a run to be cancelled.",
        ),
        "receiveCancelRun": _operation(
            "receive",
            "control",
            ["CancelRun"],
            ["worker"],
            "Every worker reads every cancellation and acts on those of its own runs.",
        ),
        "sendPluginManifest": _operation(
            "send",
            "plugins",
            ["PluginManifest"],
            ["worker", "gateway"],
            "A worker announces its plugins at start; the gateway, archives published to it.",
        ),
        "receivePluginManifest": _operation(
            "receive",
            "plugins",
            ["PluginManifest"],
            ["gateway"],
            "The gateway learns which plugins, actions and params schemas exist.",
        ),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "runmesh",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "The Kafka wire contract of runmesh (DESIGN §3). Every value is JSON with a "
                "`schema_version`; readers ignore fields they do not know. Topic names "
                f"start with RUNMESH_TOPIC_PREFIX (here `{topics.prefix}`). The major "
                "version is SCHEMA_VERSION. " + _GENERATED_NOTE
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _category_parameter() -> JsonSchema:
    return {
        "description": "Service category of the run (`RunRequest.category`).",
        "examples": ["upload", "export", "to_task", "train"],
    }


def _channel_messages(names: list[str]) -> JsonSchema:
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}


def _operation(
    action: Literal["send", "receive"],
    channel: str,
    messages: list[str],
    roles: Sequence[Literal["gateway", "worker"]],
    summary: str,
) -> JsonSchema:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "tags": [{"name": role} for role in roles],
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }


def _messages() -> JsonSchema:
    """`components/messages`: one per message type, one per run event type."""
    run_key = _key_binding(
        {
            "type": "string",
            "format": "uuid",
            "description": "The run_id: one run's records share a partition, in order.",
        }
    )
    by_run = {
        "description": "The run the message is about.",
        "location": "$message.payload#/run_id",
    }
    messages: JsonSchema = {
        "RunRequest": {
            **_message_text("RunRequest", RunRequest),
            "headers": _headers(),
            "payload": {"$ref": f"{_COMPONENT_SCHEMAS}RunRequest"},
            "correlationId": by_run,
            "bindings": run_key,
        },
        "DeadLetteredRequest": {
            "name": "DeadLetteredRequest",
            "title": "Dead-lettered request",
            "summary": "A record of a requests topic that no service will run.",
            "description": (
                "The value and key are the original record's, unchanged: it may be invalid "
                "JSON or no `RunRequest` at all. The `reason` header says why it is here."
            ),
            "contentType": "application/octet-stream",
            "headers": _headers(dead_letter=True),
            "payload": {
                "description": "The original record's value, byte for byte.",
                "format": "binary",
                "type": "string",
            },
            "bindings": _key_binding(
                {
                    "description": "The original record's key (normally its run_id), or null.",
                    "type": ["string", "null"],
                }
            ),
        },
    }
    for event_type, model in EVENT_TYPES.items():
        name = model.__name__
        messages[name] = {
            **_message_text(name, model, title=event_type),
            "headers": _headers(event_type=event_type),
            "payload": {"$ref": f"{_COMPONENT_SCHEMAS}{name}"},
            "correlationId": by_run,
            "bindings": run_key,
        }
    messages["CancelRun"] = {
        **_message_text("CancelRun", CancelRun),
        "headers": _headers(),
        "payload": {"$ref": f"{_COMPONENT_SCHEMAS}CancelRun"},
        "correlationId": by_run,
        "bindings": run_key,
    }
    messages["PluginManifest"] = {
        **_message_text("PluginManifest", PluginManifest),
        "headers": _headers(),
        "payload": {"$ref": f"{_COMPONENT_SCHEMAS}PluginManifest"},
        "bindings": _key_binding({"description": "The plugin's `code@version`.", "type": "string"}),
    }
    return messages


def _message_text(name: str, model: type, *, title: str | None = None) -> JsonSchema:
    """name, title and summary of a message, the summary from the model's docstring."""
    doc = inspect.getdoc(model) or name
    return {"name": name, "title": title or name, "summary": doc.splitlines()[0]}


def _key_binding(key_schema: JsonSchema) -> JsonSchema:
    return {"kafka": {"key": _sort_keys(key_schema), "bindingVersion": KAFKA_BINDING_VERSION}}


def _sort_keys(schema: JsonSchema) -> JsonSchema:
    """Sort a hand-written schema's keys recursively, as pydantic does with its own."""
    return {
        key: _sort_keys(value) if isinstance(value, dict) else value
        for key, value in sorted(schema.items())
    }


def _headers(*, event_type: str | None = None, dead_letter: bool = False) -> JsonSchema:
    """Kafka headers of a message (UTF-8 strings): W3C trace context, event type, DLQ reason."""
    copied = " Copied from the original record." if dead_letter else ""
    properties: JsonSchema = {
        "traceparent": {
            "description": (
                "W3C Trace Context of the span that sent the record, so a run's trace starts "
                "at its submission; absent when no trace was active." + copied
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
    if event_type is None:
        properties["event-type"] = {
            "description": "The message's type, for routing without decoding it." + copied,
            "type": "string",
        }
    else:
        properties["event-type"] = {
            "const": event_type,
            "description": "Equals the payload's `type`, for routing without decoding it.",
            "type": "string",
        }
        required.append("event-type")
    if dead_letter:
        properties["reason"] = {
            "description": (
                "Why the record was dead-lettered: the decode error, or that the run was "
                "started RUNMESH_MAX_ATTEMPTS times (MaxAttemptsExceeded)."
            ),
            "type": "string",
        }
        required.append("reason")
    headers: JsonSchema = {"type": "object", "properties": properties}
    if required:
        headers["required"] = required
    return _sort_keys(headers)


def _component_schemas(schemas: dict[str, JsonSchema]) -> JsonSchema:
    """Every schema and `$defs` entry under one name each, refs pointing at components."""
    components: JsonSchema = {}
    for name, schema in schemas.items():
        body = {k: v for k, v in schema.items() if k not in {"$schema", "$comment", "$defs"}}
        for def_name, definition in [*schema.get("$defs", {}).items(), (name, body)]:
            converted = _to_asyncapi_schema(definition)
            if components.get(def_name, converted) != converted:
                raise ValueError(
                    f"two different wire schemas are named {def_name!r}; rename one model"
                )
            components[def_name] = converted
    return dict(sorted(components.items()))


def _to_asyncapi_schema(schema: Any) -> Any:
    """Rewrite a pydantic schema fragment for AsyncAPI's Schema Object.

    `$ref`s move from `#/$defs/` to `#/components/schemas/`; pydantic's OpenAPI-style
    `discriminator` object becomes the property name AsyncAPI expects there.
    """
    if isinstance(schema, list):
        return [_to_asyncapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: JsonSchema = {}
    for key, value in schema.items():
        if key in _DATA_KEYWORDS:
            converted[key] = value
        elif key in _SCHEMA_MAPS:
            converted[key] = {name: _to_asyncapi_schema(sub) for name, sub in value.items()}
        elif key == "$ref":
            if not value.startswith(_DEFS_PREFIX):
                raise ValueError(f"unexpected $ref {value!r} in a wire schema")
            converted[key] = _COMPONENT_SCHEMAS + value.removeprefix(_DEFS_PREFIX)
        elif key == "discriminator" and isinstance(value, dict):
            converted[key] = value["propertyName"]
        else:
            converted[key] = _to_asyncapi_schema(value)
    return converted


def document_schemas() -> dict[str, JsonSchema]:
    """JSON Schemas of the stored documents that are not messages: the DM annotation format."""
    body = TypeAdapter(DMData).json_schema(mode=SCHEMA_MODE)
    note = _GENERATED_NOTE.replace("runmesh.common.events", "runmesh.common.dm")
    schema = {"$schema": JSON_SCHEMA_DIALECT, "$comment": note, **dict(sorted(body.items()))}
    return {"DMData": schema}


def render_docs() -> dict[str, str]:
    """The text of every generated file, by path relative to the docs directory."""
    files = {
        f"{SCHEMAS_DIR}/{name}.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for name, schema in {**message_schemas(), **document_schemas()}.items()
    }
    # A JSON round trip gives every node its own object, so YAML writes no anchors/aliases.
    document = json.loads(json.dumps(asyncapi_document()))
    files[ASYNCAPI_FILE] = f"# {_GENERATED_NOTE}\n" + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=100
    )
    return files


def stale_docs(directory: Path) -> list[Path]:
    """The generated files under `directory` that are missing or differ from a fresh render."""
    stale = []
    for relative, text in render_docs().items():
        path = directory / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def write_docs(directory: Path) -> list[Path]:
    """Write every generated file under `directory`; return their paths.

    A file already up to date is left untouched, so its modification time stays.
    """
    written = []
    for relative, text in render_docs().items():
        path = directory / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m runmesh.common.schemas [--check] [DIR]`; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m runmesh.common.schemas",
        description="Generate docs/schemas/*.schema.json and docs/asyncapi.yaml from the "
        "wire models in runmesh.common.events.",
    )
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path("docs"), help="default: ./docs"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory
    stale = stale_docs(directory)
    if args.check:
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run `make schemas` to regenerate them", file=sys.stderr)
            return 1
        return 0
    write_docs(directory)
    for path in stale:
        print(f"wrote {path}")
    if not stale:
        print(f"{directory}: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
