"""The emitter sends events Kafka refused again before it calls an attempt finished."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from runmesh.core.events import LogPayload, decode_event
from runmesh.execution.outcome import Succeeded
from runmesh.worker import emitter as emitter_module
from runmesh.worker.emitter import EventsNotDeliveredError, RunEmitter
from runmesh.worker.metrics import WorkerMetrics


class FlakyPublisher:
    """In-memory stand-in for `Publisher.send_raw`: the first `failures` sends are refused."""

    max_message_bytes = 1 << 20

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []
        self.acked: list[bytes] = []

    async def send_raw(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(value)
        if self.failures > 0:
            self.failures -= 1
            future.set_exception(KafkaTimeoutError("broker away"))
        else:
            self.acked.append(value)
            future.set_result(None)
        return future


def make_emitter(publisher: FlakyPublisher) -> RunEmitter:
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


async def test_refused_events_are_sent_again_with_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(emitter_module, "_RESEND_MAX_DELAY_S", 0.01)
    publisher = FlakyPublisher(failures=3)
    emitter = make_emitter(publisher)
    for step in range(5):
        emitter.emit("run.log", LogPayload(message=f"step {step}"))
    terminal = await emitter.finish(Succeeded(result={"ok": True}))
    assert decode_event(terminal).type == "run.succeeded"
    # Every event acknowledged once, each seq present, refused ones sent again unchanged.
    seqs = sorted(decode_event(value).seq for value in publisher.acked)
    assert seqs == list(range(1, 7))
    assert len(publisher.sent) == 6 + 3
    assert set(publisher.acked) == set(publisher.sent)


async def test_an_attempt_is_given_up_when_kafka_never_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(emitter_module, "RESEND_FOR_S", 0.2)
    monkeypatch.setattr(emitter_module, "_RESEND_MAX_DELAY_S", 0.01)
    emitter = make_emitter(FlakyPublisher(failures=10**6))
    with pytest.raises(EventsNotDeliveredError, match="not acknowledged by Kafka within"):
        await emitter.finish(Succeeded(result={}))
