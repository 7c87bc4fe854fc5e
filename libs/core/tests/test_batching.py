"""`GroupCommitter`: concurrent submits share one flush; one flush in flight at a time."""

from __future__ import annotations

import asyncio

import pytest

from runmesh.core.batching import GroupCommitter


class Recorder:
    """A flush that records its batches and can be held open until `release()`."""

    def __init__(self, *, hold_first: bool = False, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.active = 0
        self.max_active = 0
        self.first_started = asyncio.Event()
        self._gate = asyncio.Event()
        if not hold_first:
            self._gate.set()
        self._fail_on = fail_on  # index of the batch that raises

    def release(self) -> None:
        self._gate.set()

    async def __call__(self, items: list[int]) -> None:
        self.batches.append(list(items))
        index = len(self.batches) - 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if index == 0:
                self.first_started.set()
                await self._gate.wait()
            if index == self._fail_on:
                raise RuntimeError(f"disk full in batch {index}")
        finally:
            self.active -= 1


async def let_the_loop_run() -> None:
    """Zero-delay yields (not a timed wait) so tasks created just now take their first steps."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_submit_is_flushed_alone() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush)

    await committer.submit(7)

    assert flush.batches == [[7]]


async def test_concurrent_submits_share_one_flush() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush)

    await asyncio.gather(*(committer.submit(i) for i in range(5)))

    assert flush.batches == [[0, 1, 2, 3, 4]]


async def test_submits_during_a_flush_form_the_next_batch() -> None:
    flush = Recorder(hold_first=True)
    committer = GroupCommitter(flush)
    first = asyncio.create_task(committer.submit(0))
    await flush.first_started.wait()

    later = [asyncio.create_task(committer.submit(i)) for i in (1, 2, 3)]
    await let_the_loop_run()
    # Batch 0 is still being written: the later items wait, no second flush starts.
    assert flush.batches == [[0]]
    assert not first.done()
    assert not any(task.done() for task in later)

    flush.release()
    await asyncio.gather(first, *later)

    assert flush.batches == [[0], [1, 2, 3]]
    assert flush.max_active == 1


async def test_max_items_splits_batches() -> None:
    flush = Recorder()
    committer = GroupCommitter(flush, max_items=2)

    await asyncio.gather(*(committer.submit(i) for i in range(5)))

    assert flush.batches == [[0, 1], [2, 3], [4]]
    assert flush.max_active == 1


@pytest.mark.parametrize("max_items", [0, -1])
def test_max_items_must_be_positive(max_items: int) -> None:
    async def flush(items: list[int]) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"^max_items must be at least 1$"):
        GroupCommitter(flush, max_items=max_items)


async def test_a_flush_error_reaches_every_caller_of_its_batch_only() -> None:
    flush = Recorder(hold_first=True, fail_on=0)
    committer = GroupCommitter(flush)
    first = [asyncio.create_task(committer.submit(i)) for i in (0, 1)]
    await flush.first_started.wait()
    second = [asyncio.create_task(committer.submit(i)) for i in (2, 3)]
    await let_the_loop_run()

    flush.release()
    results = await asyncio.gather(*first, *second, return_exceptions=True)

    assert flush.batches == [[0, 1], [2, 3]]
    errors = results[:2]
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert [str(e) for e in errors] == ["disk full in batch 0"] * 2
    assert results[2:] == [None, None]


async def test_a_failed_batch_does_not_stop_later_submits() -> None:
    flush = Recorder(fail_on=0)
    committer = GroupCommitter(flush)

    with pytest.raises(RuntimeError, match="disk full in batch 0"):
        await committer.submit(1)
    await committer.submit(2)

    assert flush.batches == [[1], [2]]


async def test_a_later_batch_error_does_not_reach_earlier_callers() -> None:
    flush = Recorder(hold_first=True, fail_on=1)
    committer = GroupCommitter(flush)
    first = asyncio.create_task(committer.submit(0))
    await flush.first_started.wait()
    second = asyncio.create_task(committer.submit(1))
    await let_the_loop_run()

    flush.release()
    results = await asyncio.gather(first, second, return_exceptions=True)

    assert results[0] is None
    assert isinstance(results[1], RuntimeError)
    assert str(results[1]) == "disk full in batch 1"


async def test_a_cancelled_caller_does_not_break_its_batch() -> None:
    flush = Recorder(hold_first=True)
    committer = GroupCommitter(flush)
    first = asyncio.create_task(committer.submit(0))
    await flush.first_started.wait()
    cancelled = asyncio.create_task(committer.submit(1))
    kept = asyncio.create_task(committer.submit(2))
    await let_the_loop_run()

    cancelled.cancel()
    flush.release()
    results = await asyncio.gather(first, cancelled, kept, return_exceptions=True)

    assert results[0] is None
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] is None
    # The item was queued before the caller gave up: it is written (at-least-once).
    assert flush.batches == [[0], [1, 2]]


async def test_cancelling_a_flush_cancels_its_callers_instead_of_leaving_them_waiting() -> None:
    recorder = Recorder(hold_first=True)
    committer: GroupCommitter[int] = GroupCommitter(recorder)
    first = asyncio.ensure_future(committer.submit(1))
    await recorder.first_started.wait()
    later = asyncio.ensure_future(committer.submit(2))  # queued behind the held flush
    await let_the_loop_run()
    writer = committer._writer
    assert writer is not None
    writer.cancel()
    await asyncio.gather(first, later, return_exceptions=True)
    assert first.cancelled() and later.cancelled()
