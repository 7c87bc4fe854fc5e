"""A worker's HTTP port for probes and scrapers: `/healthz` from the loop watchdog's heartbeat,
`/metrics`.

The port is served by a thread, so it answers while the event loop is stuck: `/metrics` then
still works, and `/healthz` says the loop stopped ticking, which a liveness probe turns into a
restart (before, the port answering was all a probe saw, so a stuck worker passed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from runmesh.execution.watchdog import LoopWatchdog

log = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"


class HealthServer:
    """Serves `/healthz` and (on every other path, as before) Prometheus text on one port.

    `/healthz` answers 200 `{"status": "ok", "loop_silent_s": s}` while the loop ticked within
    `stall_limit_s`, else 503 `{"status": "stalled", ...}`.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        heartbeat: LoopWatchdog,
        *,
        port: int,
        stall_limit_s: float,
        host: str = "0.0.0.0",  # probes and scrapers come from outside the pod
    ) -> None:
        handler = _handler(registry, heartbeat, stall_limit_s)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-health", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        """Serve from a daemon thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        with contextlib.suppress(OSError):
            self._server.shutdown()
            self._server.server_close()


def _handler(
    registry: CollectorRegistry, heartbeat: LoopWatchdog, stall_limit_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == HEALTH_PATH:
                silent = round(heartbeat.silent_for(), 3)
                healthy = silent < stall_limit_s
                status = "ok" if healthy else "stalled"
                body = orjson.dumps({"status": status, "loop_silent_s": silent})
                self._answer(200 if healthy else 503, "application/json", body)
            else:
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would flood the log; say nothing."""

    return Handler
