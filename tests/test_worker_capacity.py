"""A full worker pauses its partitions and takes the next request only when a slot frees."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator

from runmesh.core.events import RunEventBase, RunRequest, RunStarted, RunSucceeded
from runmesh.core.testing import eventually
from runmesh.worker import Worker

from .conftest import CATEGORY, RunClient, WorkerFactory


def _sleep(seconds: float) -> RunRequest:
    return RunRequest(category=CATEGORY, action="sleep", params={"seconds": seconds, "steps": 10})


def _paused_fully(worker: Worker) -> bool:
    consumer = worker._consumer.consumer
    assigned = consumer.assignment()
    return bool(assigned) and consumer.paused() == assigned


@contextlib.asynccontextmanager
async def pause_samples(worker: Worker) -> AsyncIterator[list[tuple[int, bool]]]:
    """Samples (busy slots, all partitions paused) every 20 ms while the block runs."""
    samples: list[tuple[int, bool]] = []

    async def sample() -> None:
        while True:
            samples.append((worker._consumer.busy, _paused_fully(worker)))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _event(client: RunClient, run_id: uuid.UUID, kind: type[RunEventBase]) -> RunEventBase:
    return next(e for e in client.events[run_id] if isinstance(e, kind))


async def _wait_all(client: RunClient, *requests: RunRequest) -> None:
    for request in requests:
        terminal = await client.wait_terminal(request.run_id, timeout=20)
        assert isinstance(terminal, RunSucceeded), terminal


async def test_one_slot_pauses_partitions_and_runs_requests_one_after_another(
    client: RunClient, worker: WorkerFactory
) -> None:
    first, second, third = _sleep(1.5), _sleep(1.5), _sleep(0.3)
    async with worker(max_concurrent_runs=1) as running:
        assert running._consumer.capacity == 1
        async with pause_samples(running) as samples:
            await client.send(first)
            await client.wait_event(first.run_id, "run.started")
            await client.send(second)
            await client.send(third)
            await _wait_all(client, first, second, third)
        # Once the last slot frees the consumer fetches again.
        await eventually(
            lambda: running._consumer.busy == 0 and not _paused_fully(running),
            timeout=5,
            message="the consumer stayed paused after its runs ended",
        )

    # While its one slot was busy the worker stopped fetching from every partition.
    assert any(paused for busy, paused in samples if busy == 1)
    # Never more than one run at a time: each starts after the previous one ended.
    runs = sorted((first, second, third), key=lambda r: _event(client, r.run_id, RunStarted).ts)
    assert runs[0] is first
    for done, following in itertools.pairwise(runs):
        ended = _event(client, done.run_id, RunSucceeded).ts
        assert _event(client, following.run_id, RunStarted).ts >= ended
    finished = sorted(runs, key=lambda r: _event(client, r.run_id, RunSucceeded).ts)
    assert finished == runs


async def test_third_request_takes_the_first_slot_that_frees(
    client: RunClient, worker: WorkerFactory
) -> None:
    short, long_, third = _sleep(1.0), _sleep(3.0), _sleep(0.3)
    async with worker(max_concurrent_runs=2) as running, pause_samples(running) as samples:
        await client.send(short)
        await client.send(long_)
        await client.wait_event(short.run_id, "run.started")
        await client.wait_event(long_.run_id, "run.started")
        await client.send(third)
        await _wait_all(client, short, long_, third)
    assert any(paused for busy, paused in samples if busy == 2)

    def ts(request: RunRequest, kind: type[RunEventBase]) -> float:
        return _event(client, request.run_id, kind).ts.timestamp()

    # The third waits for the short run's slot and finishes while the long run still runs.
    assert ts(third, RunStarted) >= ts(short, RunSucceeded)
    assert ts(third, RunStarted) < ts(long_, RunSucceeded)
    order = sorted((short, long_, third), key=lambda r: ts(r, RunSucceeded))
    assert order == [short, third, long_]
