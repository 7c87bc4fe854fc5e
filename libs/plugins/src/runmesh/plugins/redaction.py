"""Params as they may appear in events: validated, with secret fields masked."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def redacted_params(params: BaseModel) -> dict[str, Any]:
    """Validated params as JSON-safe data, with `SecretStr`/`SecretBytes` values masked.

    pydantic masks secret types in JSON-mode dumps, including nested models and containers,
    so a secret never reaches the events topic, the gateway's database or the dashboard.
    """
    return params.model_dump(mode="json")
