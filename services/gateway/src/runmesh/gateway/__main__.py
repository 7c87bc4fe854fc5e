"""`python -m runmesh.gateway`: serve the gateway (REST, SSE and its background loops)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from runmesh.core.db import create_pool
from runmesh.core.errors import RunmeshError
from runmesh.core.logs import configure_logging
from runmesh.core.reaching import reaching, without_password
from runmesh.core.settings import Settings
from runmesh.gateway.app import create_app


def main() -> None:
    """`python -m runmesh.gateway`: settings from the environment."""
    serve(None)


def serve(settings: Settings | None) -> None:
    """Serve on `RUNMESH_GATEWAY_HOST:RUNMESH_GATEWAY_PORT` until SIGTERM or Ctrl-C."""
    try:
        settings = settings if settings is not None else Settings()
        configure_logging("gateway", settings.telemetry.log_format)
        # uvicorn reports a failed start-up as a traceback; a missing or unreachable
        # database is the common case and deserves one line.
        asyncio.run(check_database(settings))
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_level="info",
            log_config=None,  # uvicorn's records go through our handler (JSON or text)
            timeout_graceful_shutdown=10,
        )
    except RunmeshError as exc:
        print(f"runmesh gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def check_database(settings: Settings) -> None:
    """Raise `DependencyUnavailableError` unless PostgreSQL answers."""
    async with reaching(f"PostgreSQL at {without_password(settings.database_url)}"):
        pool = await create_pool(settings.database, min_size=1, max_size=1)
        await pool.close()


if __name__ == "__main__":
    main()
