"""Pages of lists: opaque cursors for newest-first lists (a (created_at, id) position,
URL-safe base64) and `after_id` positions for lists in id order.

List routes fetch `limit + 1` rows: the extra row only says whether another page follows."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

import orjson

from runmesh.gateway.errors import InvalidRequest
from runmesh.gateway.routes.support import as_utc


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor of the position just after this row."""
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) of a cursor; 422 naming `cursor` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = orjson.loads(raw)
        return as_utc(datetime.fromisoformat(created_at)), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _invalid_cursor() from exc


def encode_key_cursor(*key: str) -> str:
    """The cursor of the position just after the item with this sort key (text fields)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_key_cursor(cursor: str, size: int) -> tuple[str, ...]:
    """The sort key of a cursor from `encode_key_cursor` with `size` fields; 422 naming
    `cursor` when it is not one."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise _invalid_cursor() from exc
    if not (isinstance(key, list) and len(key) == size and all(isinstance(k, str) for k in key)):
        raise _invalid_cursor()
    return tuple(key)


def _invalid_cursor() -> InvalidRequest:
    return InvalidRequest(
        "invalid cursor: pass `next_cursor` of the previous page unchanged",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
    )


class _Dated(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


class _Numbered(Protocol):
    @property
    def id(self) -> int: ...


D = TypeVar("D", bound=_Dated)
N = TypeVar("N", bound=_Numbered)


def cursor_page(rows: Sequence[D], limit: int) -> tuple[Sequence[D], str | None]:
    """The page of `limit + 1` fetched rows, and the cursor of the next page (None: last)."""
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_cursor(page[-1].created_at, page[-1].id) if more else None


def after_id_page(rows: Sequence[N], limit: int) -> tuple[Sequence[N], int | None]:
    """The page of `limit + 1` fetched rows, and the `after_id` of the next page (None: last)."""
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None
