"""What the storage broker's messages to a job say of a failure, and what they never carry:
the platform's secrets (its S3 key, its database URL and password, every secret setting)."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from runmesh.core.settings import Settings

# Secrets shorter than this are not scrubbed from messages: replacing them would mangle the
# message, and a string that short is no secret.
_MIN_SECRET_CHARS = 8


def secrets_of(settings: Settings) -> list[str]:
    """The platform's secrets that no message to a job may carry."""
    found: list[str | None] = [settings.s3_access_key_id, settings.database_url]
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    if settings.database_url:
        with contextlib.suppress(ValueError):
            found.append(urlsplit(settings.database_url).password)
    # Longest first: a secret that contains another is replaced whole.
    return sorted(
        {value for value in found if value and len(value) >= _MIN_SECRET_CHARS},
        key=len,
        reverse=True,
    )


def problems(op: str, error: ValidationError) -> str:
    """What is wrong with the arguments of a call to `op`, field by field."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(args)'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    )
    return f"invalid arguments for {op!r}: {problems}"
