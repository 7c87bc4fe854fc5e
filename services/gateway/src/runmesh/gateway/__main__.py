"""`python -m runmesh.gateway`: serve the gateway (REST, SSE and its background loops)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from runmesh.common.errors import RunmeshError
from runmesh.common.settings import Settings
from runmesh.gateway.app import create_app


def main() -> None:
    """`python -m runmesh.gateway`: settings from the environment."""
    serve(None)


def serve(settings: Settings | None) -> None:
    """Serve on `RUNMESH_GATEWAY_HOST:RUNMESH_GATEWAY_PORT` until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings if settings is not None else Settings()
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_level="info",
            timeout_graceful_shutdown=10,
        )
    except RunmeshError as exc:
        print(f"runmesh gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
