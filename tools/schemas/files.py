"""The generated files under `docs/`: rendered in memory, compared with what is on disk,
written when stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import yaml

from tools.schemas.asyncapi import asyncapi_document
from tools.schemas.catalogue import events_markdown
from tools.schemas.json_schemas import GENERATED_NOTE, document_schemas, message_schemas

ASYNCAPI_FILE: Final = "asyncapi.yaml"
EVENTS_FILE: Final = "events.md"
SCHEMAS_DIR: Final = "schemas"


def render_docs() -> dict[str, str]:
    """The text of every generated file, by path relative to the docs directory."""
    files = {
        f"{SCHEMAS_DIR}/{name}.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for name, schema in {**message_schemas(), **document_schemas()}.items()
    }
    # A JSON round trip gives every node its own object, so YAML writes no anchors/aliases.
    document = json.loads(json.dumps(asyncapi_document()))
    files[ASYNCAPI_FILE] = f"# {GENERATED_NOTE}\n" + yaml.safe_dump(
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
