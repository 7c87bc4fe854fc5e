"""The event catalogue (`docs/events.md`): the AsyncAPI document rendered as Markdown tables
of every topic, message and run event type, with their keys, headers and fields."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Final

from runmesh.core.events import EVENT_TYPES, SCHEMA_VERSION, RunEventBase
from runmesh.core.topics import Topics
from tools.schemas.asyncapi import COMPONENT_SCHEMAS, DATA_KEYWORDS, asyncapi_document
from tools.schemas.json_schemas import GENERATED_NOTE, JsonSchema

_MD_NOTE: Final = f"<!-- {GENERATED_NOTE} -->"
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
            "pydantic models in `runmesh.core.events` generate. Values are JSON objects "
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
        if isinstance(ref, str) and ref.startswith(COMPONENT_SCHEMAS):
            found.append(ref.removeprefix(COMPONENT_SCHEMAS))
        for key, value in schema.items():
            if key not in DATA_KEYWORDS:
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
