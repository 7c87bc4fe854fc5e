"""Generate the JSON Schemas, the AsyncAPI document and the event catalogue in `docs/`.

`runmesh.common.events` stays the only place a wire field is named (CONVENTIONS 3): this
module only derives documents from it. `python -m runmesh.common.schemas [--check] [DIR]`
(re)writes `DIR/schemas/<Message>.schema.json`, `DIR/asyncapi.yaml` and `DIR/events.md` (a
Markdown rendering of the AsyncAPI document), or with `--check` lists the stale ones and
exits 1; a test runs the check against the committed `docs/`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
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
    RunEventBase,
    RunRequest,
)
from runmesh.common.topics import Topics

JsonSchema: TypeAlias = dict[str, Any]  # JSON Schema and AsyncAPI documents are free-form JSON

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
ASYNCAPI_FILE: Final = "asyncapi.yaml"
EVENTS_FILE: Final = "events.md"
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
                "were started RUNMESH_MAX_ATTEMPTS times, copied byte for byte (key, value "
                "and headers) with `reason` and `reason-detail` headers added. No runmesh "
                "process reads it."
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
            ["gateway", "worker"],
            "Submit a run: the gateway's outbox relay, any Kafka producer, or a run that starts "
            "child runs (to_task's inference, train's tune).",
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
            ["gateway", "worker"],
            "The gateway's aggregator turns events into run state and streams them over SSE; "
            "a run with child runs follows their events until they end.",
        ),
        "sendCancelRun": _operation(
            "send",
            "control",
            ["CancelRun"],
            ["gateway", "worker"],
            "The gateway asks for a run to be cancelled; so does a run whose child runs must "
            "stop with it.",
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
            ["gateway", "worker"],
            "The gateway learns which plugins, actions and params schemas exist; every worker "
            "reads the whole topic for the published versions it may have to install.",
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
        "examples": ["upload", "export", "pre_annotation", "neural_net"],
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
            "headers": _headers(sent_type="run.request"),
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
        "headers": _headers(sent_type="run.cancel"),
        "payload": {"$ref": f"{_COMPONENT_SCHEMAS}CancelRun"},
        "correlationId": by_run,
        "bindings": run_key,
    }
    messages["PluginManifest"] = {
        **_message_text("PluginManifest", PluginManifest),
        "headers": _headers(sent_type="plugin.manifest"),
        "payload": {"$ref": f"{_COMPONENT_SCHEMAS}PluginManifest"},
        "bindings": _key_binding({"description": "The plugin's `code@version`.", "type": "string"}),
    }
    return messages


def _message_text(name: str, model: type, *, title: str | None = None) -> JsonSchema:
    """name, title and summary of a message, the summary from the model's docstring (its
    first paragraph, which may span lines)."""
    doc = inspect.getdoc(model) or name
    return {"name": name, "title": title or name, "summary": " ".join(doc.split("\n\n")[0].split())}


def _key_binding(key_schema: JsonSchema) -> JsonSchema:
    return {"kafka": {"key": _sort_keys(key_schema), "bindingVersion": KAFKA_BINDING_VERSION}}


def _sort_keys(schema: JsonSchema) -> JsonSchema:
    """Sort a hand-written schema's keys recursively, as pydantic does with its own."""
    return {
        key: _sort_keys(value) if isinstance(value, dict) else value
        for key, value in sorted(schema.items())
    }


def _headers(
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


# -- the event catalogue (docs/events.md) --------------------------------------------------

_MD_NOTE: Final = f"<!-- {_GENERATED_NOTE} -->"
_SLUG_DROP: Final = re.compile(r"[^\w\- ]")
_LINK_TARGET: Final = re.compile(r"\]\(#([^)]+)\)")
_COMPARISONS: Final = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
)


def events_markdown(document: JsonSchema | None = None) -> str:
    """The event catalogue: every topic, message and run event type of the AsyncAPI document
    (default: `asyncapi_document()`) as Markdown tables of keys, headers and fields."""
    return _Catalogue(document or asyncapi_document()).render()


class _Catalogue:
    """Renders one AsyncAPI document; anchors are GitHub's heading slugs, checked unique."""

    def __init__(self, document: JsonSchema) -> None:
        self.doc = document
        self.schemas: JsonSchema = document["components"]["schemas"]
        self.messages: JsonSchema = document["components"]["messages"]
        self.event_messages = {model.__name__: event for event, model in EVENT_TYPES.items()}
        self.lines: list[str] = []
        self.slugs: set[str] = set()
        self.rendered_types: set[str] = set()

    # -- sections -------------------------------------------------------------------------------
    def render(self) -> str:
        topic_prefix = Topics().prefix
        self.lines += [
            _MD_NOTE,
            "",
            "# Event catalogue",
            "",
            "Every record runmesh writes to Kafka, rendered from the same data as the "
            "[AsyncAPI document](asyncapi.yaml) and the [JSON Schemas](schemas/), which the "
            "pydantic models in `runmesh.common.events` generate. Values are JSON objects "
            "(except dead letters, which are copies) with a `schema_version` "
            f"(now {SCHEMA_VERSION}); readers ignore fields they do not know. Topic names "
            f"start with `RUNMESH_TOPIC_PREFIX`, here `{topic_prefix}`. Header values are "
            "UTF-8 strings.",
            "",
            "A field whose *required* column says *no* may be left out: a reader then uses the "
            "default shown, or, where none is shown, an empty object or list, a new UUID for "
            "an id, the current time for a timestamp.",
            "",
        ]
        self._topics()
        self._messages()
        self._run_events()
        text = "\n".join(self.lines).rstrip("\n") + "\n"
        broken = sorted(set(_LINK_TARGET.findall(text)) - self.slugs)
        if broken:
            raise ValueError(f"the event catalogue links to missing anchors: {broken}")
        return text

    def _topics(self) -> None:
        self._heading(2, "Topics")
        rows = []
        for name, channel in self.doc["channels"].items():
            address = channel["address"]
            messages = ", ".join(self._message_link(m) for m in channel["messages"])
            rows.append(
                [
                    f"[`{address}`](#{_slug(f'`{address}`')})",
                    self._key_text(channel),
                    messages,
                    ", ".join(self._roles(name, "send")),
                    ", ".join(self._roles(name, "receive")) or "nobody",
                ]
            )
        self._table(["topic", "key", "messages", "written by", "read by"], rows)
        for name, channel in self.doc["channels"].items():
            self._heading(3, f"`{channel['address']}`")
            self.lines += [f"**{channel['title']}.** {_text(channel['description'])}", ""]
            for parameter, spec in channel.get("parameters", {}).items():
                examples = ", ".join(f"`{example}`" for example in spec.get("examples", []))
                self.lines.append(f"- `{{{parameter}}}`: {_text(spec['description'])}")
                if examples:
                    self.lines[-1] += f" Examples: {examples}."
            self.lines.append(f"- Key: {self._key_text(channel)}")
            links = ", ".join(self._message_link(m) for m in channel["messages"])
            self.lines.append(f"- Messages: {links}")
            for operation in self.doc["operations"].values():
                if operation["channel"]["$ref"] != f"#/channels/{name}":
                    continue
                verb = "Written" if operation["action"] == "send" else "Read"
                roles = " and ".join(tag["name"] for tag in operation["tags"])
                self.lines.append(f"- {verb} by the {roles}: {_text(operation['summary'])}")
            self.lines.append("")

    def _messages(self) -> None:
        self._heading(2, "Messages")
        self.lines += [
            "The messages of every topic but the events topic; run events follow in "
            "[Run events](#run-events).",
            "",
        ]
        for name, message in self.messages.items():
            if name in self.event_messages:
                continue
            self._heading(3, name)
            payload = message["payload"]
            # A model's whole docstring where there is one; the summary is its first paragraph.
            model = self._resolve(payload) if "$ref" in payload else {}
            about = model.get("description") or message["summary"]
            self.lines += [_text(about), ""]
            if "description" in message:
                self.lines += [_text(message["description"]), ""]
            key = message["bindings"]["kafka"]["key"]
            self.lines += [f"Key: {self._schema_text(key)}", ""]
            if "contentType" in message:
                self.lines += [f"Content type: `{message['contentType']}`.", ""]
            self._headers_table(message["headers"])
            if "$ref" in payload:
                self.lines += ["Value:", ""]
                self._fields_table(self._resolve(payload))
                self._nested_types(self._resolve(payload))
            else:
                self.lines += [f"Value: {self._schema_text(payload)}", ""]

    def _run_events(self) -> None:
        self._heading(2, "Run events")
        union = self.schemas["RunEvent"]
        tag = next(iter(union["properties"]))
        events = list(self.event_messages)
        self.lines += [
            f"Every record on `{Topics().events}`. {_text(inspect.getdoc(RunEventBase) or '')} "
            f"The envelope's `{tag}` names the event type and decides the `payload`.",
            "",
        ]
        self._heading(3, "Envelope")
        first = self.schemas[events[0]]
        envelope = {
            field: schema for field, schema in first["properties"].items() if field != "payload"
        }
        for name in events[1:]:
            other = self.schemas[name]["properties"]
            for field, schema in envelope.items():
                if field != tag and other.get(field) != schema:
                    raise ValueError(f"run event {name} differs in envelope field {field!r}")
        envelope[tag] = union["properties"][tag]
        payload_of = "the event type's payload, below"
        self._fields_table(
            {
                "properties": {**envelope, "payload": {"description": payload_of}},
                "required": first.get("required", []),
            },
            types={"payload": "object"},
        )
        self._heading(3, "Event headers")
        self._headers_table(
            self.messages[events[0]]["headers"], generic={"event-type": tag}, label=False
        )
        for name, event_type in self.event_messages.items():
            message = self.messages[name]
            self._heading(3, f"`{event_type}`")
            self.lines += [_text(self.schemas[name].get("description") or message["summary"]), ""]
            payload = self._resolve(self.schemas[name]["properties"]["payload"])
            about = _text(payload.get("description", ""))
            self.lines += [f"**Payload** (`{payload['title']}`). {about}".rstrip(), ""]
            self._fields_table(payload)
            self._nested_types(payload)

    # -- tables ---------------------------------------------------------------------------------
    def _fields_table(self, schema: JsonSchema, types: dict[str, str] | None = None) -> None:
        types = types or {}
        required = set(schema.get("required", []))
        rows = []
        for field, spec in schema.get("properties", {}).items():
            if field in required:
                needed = "yes"
            elif "default" in spec:
                needed = f"no, default `{json.dumps(spec['default'])}`"
            else:
                needed = "no"
            type_text = types.get(field) or self._schema_text(spec, describe=False)
            rows.append([f"`{field}`", type_text, needed, _text(spec.get("description", ""))])
        self._table(["field", "type", "required", "description"], rows)

    def _headers_table(
        self, headers: JsonSchema, generic: dict[str, str] | None = None, *, label: bool = True
    ) -> None:
        """The headers of a message; `generic` replaces a header's fixed value with the name
        of the envelope field it equals (one table for every event type)."""
        generic = generic or {}
        required = set(headers.get("required", []))
        rows = []
        for header, spec in headers["properties"].items():
            if header in generic:
                spec = {k: v for k, v in spec.items() if k != "const"}
                description = f"Equals the envelope's `{generic[header]}`."
            else:
                description = _text(spec.get("description", ""))
            type_text = self._schema_text(spec, describe=False)
            rows.append(
                [f"`{header}`", type_text, "yes" if header in required else "no", description]
            )
        if label:
            self.lines += ["Headers:", ""]
        self._table(["header", "type", "required", "description"], rows)

    def _nested_types(self, schema: JsonSchema) -> None:
        """A section for each object type the schema's fields refer to, once per document."""
        for name in _refs(schema):
            if name in self.rendered_types:
                continue
            self.rendered_types.add(name)
            nested = self.schemas[name]
            self._heading(4, name)
            self.lines += [_text(nested.get("description", "")), ""]
            self._fields_table(nested)
            self._nested_types(nested)

    def _table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(cell or "" for cell in row) + " |")
        self.lines.append("")

    def _heading(self, level: int, text: str) -> None:
        slug = _slug(text)
        if slug in self.slugs:
            raise ValueError(f"two headings of the event catalogue share the anchor #{slug}")
        self.slugs.add(slug)
        self.lines += ["#" * level + " " + text, ""]

    # -- text of schemas ------------------------------------------------------------------------
    def _schema_text(self, schema: JsonSchema, *, describe: bool = True) -> str:
        """A schema as words: `string (uuid)`, `integer ≥ 1`, `string or null`, links to
        object types; with `describe`, its description after a colon."""
        text = self._type_text(schema)
        description = schema.get("description") if describe else None
        return f"{text}: {_text(description)}" if description else text

    def _type_text(self, schema: JsonSchema) -> str:
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            return f"[{name}](#{_slug(name)})"
        if "const" in schema:
            return f"`{json.dumps(schema['const'])}`"
        if "enum" in schema:
            return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                parts = [self._type_text(part) for part in schema[keyword]]
                return " or ".join(sorted(parts, key=lambda part: part == "null"))
        kind = schema.get("type")
        if isinstance(kind, list):
            return " or ".join(str(part) for part in kind)
        if kind == "array":
            items = schema.get("items")
            return f"array of {self._type_text(items)}" if isinstance(items, dict) else "array"
        if kind == "object":
            values = schema.get("additionalProperties")
            if isinstance(values, dict):
                return f"object (string → {self._type_text(values)})"
            return "object"
        text = str(kind) if kind else "any"
        if "format" in schema:
            text += f" ({schema['format']})"
        bounds = [f"{sign} {schema[key]}" for key, sign in _COMPARISONS if key in schema]
        if bounds:
            text += " " + ", ".join(bounds)
        if "pattern" in schema:
            text += f" matching `{schema['pattern']}`"
        return _cell(text)

    def _key_text(self, channel: JsonSchema) -> str:
        keys = []
        for ref in channel["messages"].values():
            key = self._resolve(ref)["bindings"]["kafka"]["key"]
            if key not in keys:
                keys.append(key)
        return "; ".join(self._schema_text(key) for key in keys)

    def _message_link(self, name: str) -> str:
        if name in self.event_messages:
            event_type = self.event_messages[name]
            return f"[`{event_type}`](#{_slug(f'`{event_type}`')})"
        return f"[{name}](#{_slug(name)})"

    def _roles(self, channel: str, action: str) -> list[str]:
        roles: list[str] = []
        for operation in self.doc["operations"].values():
            if operation["channel"]["$ref"] == f"#/channels/{channel}" and (
                operation["action"] == action
            ):
                roles += [tag["name"] for tag in operation["tags"] if tag["name"] not in roles]
        return roles

    def _resolve(self, node: JsonSchema) -> JsonSchema:
        while "$ref" in node:
            target: Any = self.doc
            for part in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node


def _refs(schema: Any) -> list[str]:
    """Names of the component schemas `schema`'s fields refer to, in field order."""
    found: list[str] = []
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_COMPONENT_SCHEMAS):
            found.append(ref.removeprefix(_COMPONENT_SCHEMAS))
        for key, value in schema.items():
            if key not in _DATA_KEYWORDS:
                found += [name for name in _refs(value) if name not in found]
    elif isinstance(schema, list):
        for item in schema:
            found += [name for name in _refs(item) if name not in found]
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return _SLUG_DROP.sub("", heading.lower()).replace(" ", "-")


def _text(value: str | None) -> str:
    """Text for one table cell or line: one line, pipes escaped."""
    return _cell(" ".join((value or "").split()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


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
    files[EVENTS_FILE] = events_markdown(document)
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
        description="Generate docs/schemas/*.schema.json, docs/asyncapi.yaml and "
        "docs/events.md from the wire models in runmesh.common.events.",
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
