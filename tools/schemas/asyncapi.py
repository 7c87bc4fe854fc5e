"""The AsyncAPI 3.0.0 document of every runmesh topic: channels, operations, messages with
their Kafka headers and keys, and the message schemas as components."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Final, Literal

from runmesh.core.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    CancelRun,
    PipelineRequest,
    PluginManifest,
    RunRequest,
    WorkerPresence,
)
from runmesh.core.topics import Topics
from tools.schemas.json_schemas import DEFS_PREFIX, GENERATED_NOTE, JsonSchema, message_schemas
from tools.schemas.kafka_headers import headers as _headers
from tools.schemas.kafka_headers import sort_keys as _sort_keys

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"

COMPONENT_SCHEMAS: Final = "#/components/schemas/"
# Keywords whose value is data, not a schema: never rewritten.
DATA_KEYWORDS: Final = frozenset({"const", "default", "enum", "examples"})
# Keywords whose value maps names (not keywords) to schemas.
_SCHEMA_MAPS: Final = frozenset(
    {"$defs", "definitions", "properties", "patternProperties", "dependentSchemas"}
)


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
        "pipelines": {
            "address": topics.pipelines,
            "title": "Pipeline requests",
            "description": (
                "Requests to start a pipeline, from any Kafka producer; keyed by run_id, "
                "which is also the idempotency key. The gateway starts each as POST "
                "/v1/pipelines would; one it refuses becomes a failed run (error type "
                "`PipelineRefused`) saying why."
            ),
            "messages": _channel_messages(["PipelineRequest"]),
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
        "workers": {
            "address": topics.workers,
            "title": "Worker presence",
            "description": (
                "Workers announce themselves: when they start serving a category, every "
                "RUNMESH_WORKER_HEARTBEAT_S, when they drain and when they stop. A worker "
                "silent for three heartbeats counts as gone. Kept an hour."
            ),
            "messages": _channel_messages(["WorkerPresence"]),
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
        "sendPipelineRequest": _operation(
            "send",
            "pipelines",
            ["PipelineRequest"],
            ["producer"],
            "Any producer submits a pipeline without the REST API.",
        ),
        "receivePipelineRequest": _operation(
            "receive",
            "pipelines",
            ["PipelineRequest"],
            ["gateway"],
            "The gateway checks and starts the pipeline; its replicas share the partitions "
            "through one consumer group.",
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
        "sendWorkerPresence": _operation(
            "send",
            "workers",
            ["WorkerPresence"],
            ["worker"],
            "A worker says which category it serves, in which pool, with which labels, and "
            "how many of its slots are busy.",
        ),
        "receiveWorkerPresence": _operation(
            "receive",
            "workers",
            ["WorkerPresence"],
            ["gateway"],
            "The gateway keeps the live workers: GET /v1/workers, and why a queued run waits.",
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
                "version is SCHEMA_VERSION. " + GENERATED_NOTE
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
    roles: Sequence[Literal["gateway", "worker", "producer"]],
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
            "payload": {"$ref": f"{COMPONENT_SCHEMAS}RunRequest"},
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
            "payload": {"$ref": f"{COMPONENT_SCHEMAS}{name}"},
            "correlationId": by_run,
            "bindings": run_key,
        }
    messages["CancelRun"] = {
        **_message_text("CancelRun", CancelRun),
        "headers": _headers(sent_type="run.cancel"),
        "payload": {"$ref": f"{COMPONENT_SCHEMAS}CancelRun"},
        "correlationId": by_run,
        "bindings": run_key,
    }
    messages["PipelineRequest"] = {
        **_message_text("PipelineRequest", PipelineRequest),
        "headers": _headers(),
        "payload": {"$ref": f"{COMPONENT_SCHEMAS}PipelineRequest"},
        "correlationId": by_run,
        "bindings": run_key,
    }
    messages["PluginManifest"] = {
        **_message_text("PluginManifest", PluginManifest),
        "headers": _headers(sent_type="plugin.manifest"),
        "payload": {"$ref": f"{COMPONENT_SCHEMAS}PluginManifest"},
        "bindings": _key_binding({"description": "The plugin's `code@version`.", "type": "string"}),
    }
    messages["WorkerPresence"] = {
        **_message_text("WorkerPresence", WorkerPresence),
        "headers": _headers(sent_type="worker.presence"),
        "payload": {"$ref": f"{COMPONENT_SCHEMAS}WorkerPresence"},
        "bindings": _key_binding({"description": "The worker's id.", "type": "string"}),
    }
    return messages


def _message_text(name: str, model: type, *, title: str | None = None) -> JsonSchema:
    """name, title and summary of a message, the summary from the model's docstring (its
    first paragraph, which may span lines)."""
    doc = inspect.getdoc(model) or name
    return {"name": name, "title": title or name, "summary": " ".join(doc.split("\n\n")[0].split())}


def _key_binding(key_schema: JsonSchema) -> JsonSchema:
    return {"kafka": {"key": _sort_keys(key_schema), "bindingVersion": KAFKA_BINDING_VERSION}}


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
        if key in DATA_KEYWORDS:
            converted[key] = value
        elif key in _SCHEMA_MAPS:
            converted[key] = {name: _to_asyncapi_schema(sub) for name, sub in value.items()}
        elif key == "$ref":
            if not value.startswith(DEFS_PREFIX):
                raise ValueError(f"unexpected $ref {value!r} in a wire schema")
            converted[key] = COMPONENT_SCHEMAS + value.removeprefix(DEFS_PREFIX)
        elif key == "discriminator" and isinstance(value, dict):
            converted[key] = value["propertyName"]
        else:
            converted[key] = _to_asyncapi_schema(value)
    return converted
