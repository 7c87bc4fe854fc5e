"""Generate the JSON Schemas, the AsyncAPI document and the event catalogue in `docs/`.

`runmesh.core.events` stays the only place a wire field is named (CONVENTIONS 3): this
package only derives documents from it. `python -m tools.schemas [--check] [DIR]` (from the
repository root; `make schemas`, `make lint`) (re)writes `DIR/schemas/<Message>.schema.json`,
`DIR/asyncapi.yaml` and `DIR/events.md` (a Markdown rendering of the AsyncAPI document), or
with `--check` lists the stale ones and exits 1; a test runs the check against the committed
`docs/`. It lives outside every runtime distribution: no service imports it.
"""

from __future__ import annotations

from tools.schemas.asyncapi import ASYNCAPI_VERSION, KAFKA_BINDING_VERSION, asyncapi_document
from tools.schemas.catalogue import events_markdown
from tools.schemas.cli import main
from tools.schemas.files import (
    ASYNCAPI_FILE,
    EVENTS_FILE,
    SCHEMAS_DIR,
    render_docs,
    stale_docs,
    write_docs,
)
from tools.schemas.json_schemas import (
    JSON_SCHEMA_DIALECT,
    SCHEMA_MODE,
    JsonSchema,
    document_schemas,
    message_schemas,
)

__all__ = [
    "ASYNCAPI_FILE",
    "ASYNCAPI_VERSION",
    "EVENTS_FILE",
    "JSON_SCHEMA_DIALECT",
    "KAFKA_BINDING_VERSION",
    "SCHEMAS_DIR",
    "SCHEMA_MODE",
    "JsonSchema",
    "asyncapi_document",
    "document_schemas",
    "events_markdown",
    "main",
    "message_schemas",
    "render_docs",
    "stale_docs",
    "write_docs",
]
