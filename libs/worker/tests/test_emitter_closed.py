"""Nothing is published after an attempt ends, even by an action thread left running."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from runmesh.core.events import LogPayload, decode_event
from runmesh.execution.outcome import Cancelled
from runmesh.plugins.run import Run
from runmesh.worker import emitter as emitter_module
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.metrics import WorkerMetrics


class RecordingPublisher:
    """In-memory stand-in for `Publisher.send_raw` that acknowledges every send at once."""

    max_message_bytes = 1 << 20

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_raw(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def types(self) -> list[str]:
        return [decode_event(value).type for value in self.sent]


def make_emitter(publisher: RecordingPublisher) -> RunEmitter:
    return RunEmitter(
        publisher,  # type: ignore[arg-type]
        topic="events",
        run_id=uuid.uuid4(),
        attempt=1,
        service="test",
        worker="w",
        category="test",
        tenant="t",
        headers=[],
        metrics=WorkerMetrics(),
    )


def keep_reporting(run: Run, times: int) -> None:
    """What a sync action that ignores cancellation does on its abandoned thread."""
    for step in range(times):
        run.set_progress(step, times)
        run.log_message(f"still working {step}")
        run.set_metrics({"loss": 1 / (step + 1)}, category="train")


def closed_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "after its attempt ended" in r.getMessage()]


async def test_reports_after_the_terminal_event_are_dropped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = RecordingPublisher()
    emitter = make_emitter(publisher)
    run = Run(run_id=uuid.uuid4(), attempt=1, sink=emitter, progress_interval_s=0.2)
    await asyncio.to_thread(run.log_message, "working")  # the action, while its run is live
    await emitter.finish(Cancelled("cancelled by user"))
    assert publisher.types() == ["run.log", "run.cancelled"]

    with caplog.at_level(logging.DEBUG, logger=emitter_module.__name__):
        # Neither the thread nor a report made on the loop raises, and neither is published.
        await asyncio.to_thread(keep_reporting, run, 50)
        run.log_message("from the loop")
        await emitter.emit_async("run.log", LogPayload(message="from a job pipe"))
    assert publisher.types() == ["run.log", "run.cancelled"]
    assert emitter.seq == 2
    assert emitter.dropped >= 50 * 2 + 2  # progress is coalesced; logs and metrics are not
    assert len(closed_warnings(caplog)) == 1


async def test_reports_after_abort_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    publisher = RecordingPublisher()
    emitter = make_emitter(publisher)
    run = Run(run_id=uuid.uuid4(), attempt=1, sink=emitter, progress_interval_s=0.2)
    await asyncio.to_thread(keep_reporting, run, 3)
    await emitter.abort()  # shutdown: the attempt is left for redelivery, without an end
    published = list(publisher.sent)

    with caplog.at_level(logging.DEBUG, logger=emitter_module.__name__):
        await asyncio.to_thread(keep_reporting, run, 10)
    assert publisher.sent == published
    assert emitter.dropped > 0
    assert len(closed_warnings(caplog)) == 1
