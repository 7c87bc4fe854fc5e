"""Container health check: the gateway's /healthz, or a worker's /healthz.

The image's HEALTHCHECK and the compose file run `python /app/healthcheck.py`; Kubernetes
probes GET the same endpoints. A worker serves /healthz beside /metrics on
RUNMESH_METRICS_PORT (set by the image): 200 while its event loop ticks, 503 once it has not
for RUNMESH_HEALTH_LOOP_STALL_S. `APP_MODULE` (set by the image) says which service this
container runs.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from runmesh.core.settings import Settings

GATEWAY_MODULE = "runmesh.gateway"
TIMEOUT_S = 5.0


def health_url(settings: Settings, module: str) -> str:
    """The URL that answers 200 while the service in this container is up."""
    if module == GATEWAY_MODULE:
        return f"http://127.0.0.1:{settings.gateway_port}/healthz"
    if settings.metrics_port is None:
        raise SystemExit(
            f"{module or 'this worker'}: RUNMESH_METRICS_PORT is not set, so it serves no "
            "HTTP endpoint to check"
        )
    return f"http://127.0.0.1:{settings.metrics_port}/healthz"


def main() -> int:
    """0 when the service answers 200, else 1 (what Docker expects of a health check)."""
    url = health_url(Settings(), os.environ.get("APP_MODULE", ""))
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
