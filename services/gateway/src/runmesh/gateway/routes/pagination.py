"""Opaque cursors for newest-first lists: a (created_at, id) position, URL-safe base64."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

import orjson

from runmesh.gateway.errors import InvalidRequest


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor of the position just after this row."""
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) of a cursor; 422 naming `cursor` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = orjson.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidRequest(
            "invalid cursor: pass `next_cursor` of the previous page unchanged",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from exc
