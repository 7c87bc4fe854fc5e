"""A worker's /healthz fails while its event loop is stuck (a liveness probe then restarts it);
/metrics keeps answering from its own thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from runmesh.execution.watchdog import LoopWatchdog
from runmesh.worker.health import HealthServer


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_healthz_reports_a_stuck_loop_and_metrics_still_answer() -> None:
    registry = CollectorRegistry()
    Counter("probe_demo", "a counter", registry=registry).inc()
    heartbeat = LoopWatchdog(limit_s=60, tick_s=0.02)
    server = HealthServer(registry, heartbeat, port=0, host="127.0.0.1", stall_limit_s=0.3)
    server.start()
    heartbeat.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        await asyncio.sleep(0.05)
        status, body = await asyncio.to_thread(get, f"{base}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"

        seen: list[tuple[int, bytes]] = []
        probe = threading.Thread(
            target=lambda: (
                time.sleep(0.6),
                seen.append(get(f"{base}/healthz")),
                seen.append(get(f"{base}/metrics")),
            ),
        )
        probe.start()
        time.sleep(1.0)  # noqa: ASYNC251 -- an action holding the loop: no tick for a second
        await asyncio.to_thread(probe.join)
        (stuck, stuck_body), (metrics, metrics_body) = seen
        assert stuck == 503 and json.loads(stuck_body)["status"] == "stalled"
        assert metrics == 200 and b"probe_demo_total 1.0" in metrics_body

        await asyncio.sleep(0.1)  # the loop runs again: healthy again
        status, _ = await asyncio.to_thread(get, f"{base}/healthz")
        assert status == 200
    finally:
        heartbeat.stop()
        server.close()
