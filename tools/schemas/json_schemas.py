"""The standalone JSON Schemas (draft 2020-12) of the wire messages and other documents.

`runmesh.core.events` stays the only place a Kafka message's field is named (CONVENTIONS 3):
these schemas are derived from its pydantic models, and the AsyncAPI document reuses them.
The other documents (DM annotations, pipeline definitions) come from the models of their own
modules and are not in the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias

from pydantic import BaseModel, TypeAdapter

from runmesh.core.events import (
    CancelRun,
    PipelineRequest,
    PluginManifest,
    RunEvent,
    RunRequest,
    WorkerPresence,
)
from runmesh.core.pipelines import PipelineSpec
from runmesh.dm import DMData

JsonSchema: TypeAlias = dict[str, Any]  # JSON Schema and AsyncAPI documents are free-form JSON

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

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
    "PipelineRequest": PipelineRequest,
    "WorkerPresence": WorkerPresence,
}
_RUN_EVENT_DESCRIPTION: Final = "Any run event, discriminated by `type`."
GENERATED_NOTE: Final = "Generated from runmesh.core.events by `make schemas`; do not edit by hand."

DEFS_PREFIX: Final = "#/$defs/"


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
            "$comment": GENERATED_NOTE,
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
        member = union["$defs"][ref.removeprefix(DEFS_PREFIX)]
        member["required"] = sorted({*member.get("required", ()), tag}, key=_field_order(member))
    # AsyncAPI also wants the discriminator defined and required at the union itself.
    union["type"] = "object"
    union["properties"] = {tag: {"enum": list(mapping), "type": "string"}}
    union["required"] = [tag]


def _field_order(schema: JsonSchema) -> Callable[[str], int]:
    """Sort key putting names in the order of the schema's `properties` (field order)."""
    order = {name: index for index, name in enumerate(schema.get("properties", {}))}
    return lambda name: order.get(name, len(order))


# Documents that are not Kafka messages, by name, with the module that defines each: the DM
# annotation format, and the pipeline definition a user writes (YAML or JSON) and submits.
_DOCUMENT_TYPES: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "DMData": (DMData, "runmesh.dm"),
    "PipelineSpec": (PipelineSpec, "runmesh.core.pipelines"),
}


def document_schemas() -> dict[str, JsonSchema]:
    """JSON Schemas of the documents that are not messages: DM annotations, pipeline specs."""
    schemas: dict[str, JsonSchema] = {}
    for name, (model, module) in _DOCUMENT_TYPES.items():
        body = model.model_json_schema(mode=SCHEMA_MODE)
        note = GENERATED_NOTE.replace("runmesh.core.events", module)
        schemas[name] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$comment": note,
            **dict(sorted(body.items())),
        }
    return schemas
