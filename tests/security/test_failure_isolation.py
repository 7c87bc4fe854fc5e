"""A misbehaving action costs only its own run: crashes, leaks, ignored cancels, a held loop."""

from __future__ import annotations

import asyncio
import os
import threading

from runmesh.core.events import RunCancelled, RunFailed, RunSucceeded

from ..conftest import RunClient, WorkerFactory

# The base test settings trust the test kit to run in the worker; a tenant-like deployment
# trusts nothing but the built-in plugins.
UNTRUSTED = {"in_process_plugins": []}


async def test_a_task_action_that_kills_its_process_costs_only_its_own_run(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(**UNTRUSTED) as running:
        healthy = [await client.submit("sleep", {"seconds": 1.5, "steps": 15}) for _ in range(2)]
        crash = await client.submit("crash_task")
        crash_end = await client.wait_terminal(crash.run_id, timeout=60)
        healthy_ends = [await client.wait_terminal(r.run_id, timeout=60) for r in healthy]
    assert isinstance(crash_end, RunFailed), crash_end
    assert crash_end.payload.error_type == "JobCrashed"
    for end in healthy_ends:
        assert isinstance(end, RunSucceeded), end
        # `task` code the operator does not vouch for ran in a job, not in the worker
        assert end.payload.result["pid"] != os.getpid()
        assert end.worker == running.worker_id


async def test_a_task_action_past_the_memory_limit_fails_alone(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(**UNTRUSTED, job_memory_mb=512, job_memory_limit="rlimit"):
        hog = await client.submit("hog_task", {"mb": 2048})
        neighbour = await client.submit("sleep", {"seconds": 0.5, "steps": 5})
        hog_end = await client.wait_terminal(hog.run_id, timeout=60)
        neighbour_end = await client.wait_terminal(neighbour.run_id, timeout=60)
    assert isinstance(hog_end, RunFailed), hog_end
    assert hog_end.payload.error_type == "OutOfMemory", hog_end
    assert isinstance(neighbour_end, RunSucceeded), neighbour_end


async def test_cancel_stops_in_process_code_that_ignores_it(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(cancel_grace_s=1.0):
        request = await client.submit("stubborn_task", {"seconds": 600})
        await client.wait_event(request.run_id, "run.started")
        await client.cancel(request.run_id)
        terminal = await client.wait_terminal(request.run_id, timeout=60)
        assert isinstance(terminal, RunCancelled), terminal

        def thread_gone() -> bool:
            return not any(t.name == f"run-{request.run_id}" for t in threading.enumerate())

        # Interrupted, not left behind: its thread ends within the grace period plus 1 s.
        for _ in range(200):
            if thread_gone():
                break
            await asyncio.sleep(0.05)
        assert thread_gone(), "the action's thread still runs after the cancel"


async def test_an_action_holding_the_event_loop_is_stopped_and_its_neighbours_go_on(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker(loop_block_limit_s=1.5):
        neighbour = await client.submit("async_sleep", {"seconds": 0.2})
        await client.wait_terminal(neighbour.run_id, timeout=60)
        holder = await client.submit("hold_loop", {"seconds": 600})
        after = await client.submit("async_sleep", {"seconds": 0.2})
        holder_end = await client.wait_terminal(holder.run_id, timeout=60)
        after_end = await client.wait_terminal(after.run_id, timeout=60)
    assert isinstance(holder_end, RunFailed), holder_end
    assert holder_end.payload.error_type == "LoopBlocked"
    assert "RUNMESH_LOOP_BLOCK_LIMIT_S" in holder_end.payload.message
    assert isinstance(after_end, RunSucceeded), after_end
