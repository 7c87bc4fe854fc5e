"""Following a pipeline live: each step's run rendered over SSE as it runs, in the order the
steps start, then a line with how the step ended."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runmesh.cli.watch import EXIT_CODES, watch_run

if TYPE_CHECKING:
    from rich.console import Console

    from runmesh.cli.gateway_client import GatewayClient

FOLLOW_INTERVAL_S = 0.5  # a pipeline's own run has no events: its steps' states are polled
STEP_ENDS = ("succeeded", "failed", "cancelled", "skipped")


async def follow_pipeline(
    api: GatewayClient, run_id: str, console: Console, *, debug: bool = False
) -> dict[str, Any]:
    """Render each step of the pipeline run as it runs (debug log lines only with `debug`),
    until the pipeline ends; the pipeline (`GET /v1/pipelines/{id}`) as it ended."""
    import asyncio  # imported here, not above, to keep `runmesh --help` fast

    followed: set[str] = set()
    while True:
        pipeline: dict[str, Any] = await api.request("GET", f"/v1/pipelines/{run_id}")
        step = _next_step(pipeline["steps"], followed)
        if step is not None:
            followed.add(step["step"])
            if step["percent"] is not None:  # it has a run: watch it to its end
                console.rule(f"[bold]{step['step']}[/]", style="dim")
                await watch_run(api, step["run_id"], console, debug=debug)
                continue  # its end may have started others: read the pipeline again
            _print_end(console, step)
            continue
        if pipeline["run"]["state"] in EXIT_CODES:
            return pipeline
        await asyncio.sleep(FOLLOW_INTERVAL_S)


def _next_step(steps: list[dict[str, Any]], followed: set[str]) -> dict[str, Any] | None:
    """The first step (in definition order) not followed yet that has a run to watch, or that
    ended without one (skipped, or failed before its run began)."""
    for step in steps:
        if step["step"] in followed:
            continue
        if step["percent"] is not None or step["state"] in STEP_ENDS:
            return step
    return None


def _print_end(console: Console, step: dict[str, Any]) -> None:
    why = f": {step['error']}" if step.get("error") else ""
    line = f"{step['step']}: {step['state']} (run {step['run_id'][:8]}){why}"
    console.print(line, markup=False, highlight=False)


def print_steps(console: Console, pipeline: dict[str, Any]) -> None:
    """One line per step with how it ended, then the pipeline's own end."""
    for step in pipeline["steps"]:
        _print_end(console, step)
    run = pipeline["run"]
    error = run.get("error") or {}
    why = f": {error['message']}" if error.get("message") else ""
    console.print(f"pipeline {run['state']}{why}", markup=False, highlight=False)
