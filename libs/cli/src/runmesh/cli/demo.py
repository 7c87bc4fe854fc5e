"""The `runmesh dev` demo: a run submitted over REST and followed over SSE, as a user would."""

from __future__ import annotations

import asyncio
from typing import TextIO

from rich.console import Console

from runmesh.cli.dev_info import DevInfo
from runmesh.cli.errors import CliError
from runmesh.cli.gateway_client import GatewayClient
from runmesh.cli.watch import watch_run

DEMO_PLUGIN = "hello"
DEMO_TIMEOUT_S = 120.0


async def run_demo(info: DevInfo, out: TextIO) -> int:
    """Submit the demo run through the gateway, render it live; return its exit status."""
    async with GatewayClient(info.gateway_url, info.token) as api:
        await _wait_for_plugin(api)
        run = await api.submit(
            {"category": "demo", "plugin": DEMO_PLUGIN, "action": "count", "params": {"to": 30}}
        )
        out.write(f"demo: submitted run {run['id']} ({DEMO_PLUGIN}.count) to {info.gateway_url}\n")
        out.flush()
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            return await watch_run(api, run["id"], Console(file=out))


async def _wait_for_plugin(api: GatewayClient) -> None:
    """The demo worker announces its plugin at start; the gateway validates runs against it."""
    async with asyncio.timeout(60):
        while True:
            try:
                await api.request("GET", f"/v1/plugins/{DEMO_PLUGIN}")
            except CliError:
                await asyncio.sleep(0.2)
                continue
            return
