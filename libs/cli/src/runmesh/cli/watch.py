"""Follow a run over SSE to its end, rendering it; the exit status says how it ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from runmesh.cli.render import RunRenderer
from runmesh.core.errors import DecodeError

if TYPE_CHECKING:
    from rich.console import Console

    from runmesh.cli.gateway_client import GatewayClient

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}


async def watch_run(
    api: GatewayClient, run_id: str, console: Console, *, debug: bool = False
) -> int:
    """Render the run's events until it ends (debug log lines only with `debug`); return 0
    only if it succeeded."""
    # Imported here, not above, to keep `runmesh --help` fast (the events are pydantic models).
    from runmesh.core.events import decode_event

    state = None
    with RunRenderer(console, debug=debug) as renderer:
        async for message in api.stream(run_id):
            if message.event == "run.queue":  # queued: why it waits (sent when that changes)
                renderer.note(f"queued: {message.data.get('reason', '')}", "dim")
                continue
            if message.event == "run.state":  # the gateway ended the run itself (cancel)
                state = message.data.get("state")
                renderer.note(f"run {run_id} is {state}", "yellow")
                continue
            try:
                event = decode_event(orjson.dumps(message.data))
            except DecodeError as exc:
                renderer.note(f"  (unreadable event {message.id}: {exc})", "dim")
                continue
            renderer.show(event)
    run = await api.run(run_id)
    state = run.get("state", state)
    return EXIT_CODES.get(str(state), 1)
