"""Pydantic validation errors as one line a person can act on."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic_core import ErrorDetails


def describe_errors(
    errors: Iterable[ErrorDetails], *, root: str = "(root)", limit: int | None = None
) -> str:
    """`field.path: message; other: message`, naming `root` for errors of the whole value."""
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or root}: {error['msg']}"
        for error in errors
    ]
    if limit is not None and len(parts) > limit:
        parts = [*parts[:limit], f"… and {len(parts) - limit} more"]
    return "; ".join(parts)
