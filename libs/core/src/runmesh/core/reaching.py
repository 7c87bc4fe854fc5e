"""Start-up connection failures as one line naming the server, not a traceback."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import asyncpg
from aiokafka.errors import KafkaError

from runmesh.core.errors import DependencyUnavailableError, RunmeshError


@contextlib.asynccontextmanager
async def reaching(what: str) -> AsyncIterator[None]:
    """Turn a failure to connect to `what` into `DependencyUnavailableError`."""
    try:
        yield
    except RunmeshError:
        raise
    except (OSError, TimeoutError, KafkaError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailableError(f"cannot reach {what}: {exc}") from exc


def without_password(dsn: str | None) -> str:
    """A DSN fit for a message: its password masked ("(unset)" for None)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn or "(unset)")
