"""Turns one attempt's reports into numbered events on `runmesh.events`."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import RecordMetadata
from pydantic_core import PydanticSerializationError

from runmesh.core.errors import RunmeshError
from runmesh.core.events import (
    EVENT_TYPES,
    CancelledPayload,
    EventPayload,
    FailedPayload,
    LogPayload,
    RetryingPayload,
    RunEventBase,
    SucceededPayload,
    encode,
)
from runmesh.core.kafka.publisher import Publisher
from runmesh.execution.outcome import Cancelled, Failed, Outcome, Succeeded
from runmesh.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1000  # reports buffered between an action and the publisher
# How long `finish` re-sends events Kafka did not acknowledge before giving the attempt up
# (then the request is left uncommitted for redelivery, as before).
RESEND_FOR_S = 120.0
ABORT_DRAIN_S = 5.0  # an abandoned attempt's last reports get this long to be published
_RESEND_MAX_DELAY_S = 10.0
_TRUNCATED_SUFFIX = " … [truncated]"


@dataclass(slots=True)
class _Sent:
    """One event handed to the producer, kept until acknowledged so it can be sent again."""

    future: asyncio.Future[RecordMetadata]
    value: bytes
    headers: list[tuple[str, bytes]]


class EventsNotDeliveredError(RunmeshError):
    """Kafka kept refusing some events of an attempt for `RESEND_FOR_S`."""

    retriable = True


class EventBufferFullError(RunmeshError):
    """An async action reported more events than the buffer holds without ever awaiting."""


class RunEmitter:
    """Numbers one attempt's events gaplessly from 1 and publishes them in order.

    Reports from the action arrive through `emit` (any thread) or `emit_async` (the loop) into
    a bounded queue drained by one publishing task, so `seq` order is publish order. `finish`
    publishes the terminal event and waits until every event of the attempt is acknowledged.
    Once `finish`, `retry_later` or `abort` has begun the emitter is closed: reports that still
    arrive (from an action thread left behind after a cancel or timeout) are dropped, never
    published after the attempt's last event.
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        topic: str,
        run_id: uuid.UUID,
        attempt: int,
        service: str,
        worker: str,
        category: str,
        tenant: str,
        headers: list[tuple[str, bytes]],
        metrics: WorkerMetrics,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._run_id = run_id
        self._attempt = attempt
        self._service = service
        self._worker = worker
        self._category = category
        self._tenant = tenant
        self._headers = headers
        self._metrics = metrics
        self._seq = 0
        self._pending: list[_Sent] = []
        self._failed: list[_Sent] = []
        self._queue: asyncio.Queue[tuple[str, EventPayload] | None] = asyncio.Queue(_QUEUE_SIZE)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self._dropped = 0

    @property
    def seq(self) -> int:
        """The seq of the last event published."""
        return self._seq

    @property
    def dropped(self) -> int:
        """Reports that arrived after the emitter was closed, and were not published."""
        return self._dropped

    def _drop_if_closed(self, event_type: str) -> bool:
        # Only ever called on the loop thread, like `finish` and `abort`: no lock needed.
        if not self._closed:
            return False
        self._dropped += 1
        if self._dropped == 1:
            # One line per attempt: an action that ignores cancellation may report thousands.
            log.warning(
                "run %s attempt %d: the action reported %s after its attempt ended (a thread "
                "that ignores cancellation or timeout?); dropping this and later reports",
                self._run_id,
                self._attempt,
                event_type,
            )
        return True

    def _ensure_pump(self) -> None:
        # Started on the first report: most short runs report nothing but start and end.
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._drain())

    async def _put(self, item: tuple[str, EventPayload]) -> None:
        if self._drop_if_closed(item[0]):
            return
        self._ensure_pump()
        await self._queue.put(item)

    # RunSink
    def emit(self, event_type: str, payload: EventPayload) -> None:
        """Queue a report from the action; blocks a reporting thread while the queue is full."""
        if threading.get_ident() != self._loop_thread:
            # The closed check runs on the loop (in `_put`), so it cannot race `finish`.
            asyncio.run_coroutine_threadsafe(self._put((event_type, payload)), self._loop).result()
            return
        if self._drop_if_closed(event_type):
            return
        self._ensure_pump()
        try:
            self._queue.put_nowait((event_type, payload))
        except asyncio.QueueFull:
            raise EventBufferFullError(
                f"more than {_QUEUE_SIZE} events reported without awaiting; an async action "
                "must await (e.g. `await asyncio.sleep(0)`) between bursts of reports"
            ) from None

    async def emit_async(self, event_type: str, payload: EventPayload) -> None:
        """Queue a report, waiting while the queue is full (used for job pipes)."""
        await self._put((event_type, payload))

    async def publish_now(self, event_type: str, payload: EventPayload) -> None:
        """Publish directly; only before the action reports anything."""
        await self._publish(event_type, payload)

    async def finish(self, outcome: Outcome) -> bytes:
        """Drain reports, publish the terminal event, wait for every ack; return its bytes."""
        await self._close()
        event_type, payload = _terminal(outcome)
        value = await self._publish(event_type, payload)
        await self._confirm_all()
        return value

    async def retry_later(self, line: LogPayload, notice: RetryingPayload) -> None:
        """End the attempt but not the run: drain reports, publish `line` (a warning for people)
        and `run.retrying`, wait for every ack. `finish` may still follow in this attempt: a
        cancel during the backoff ends the run here, not in an attempt that never started."""
        await self._close()
        await self._publish("run.log", line)
        await self._publish("run.retrying", notice)
        await self._confirm_all()

    async def _close(self) -> None:
        """Take no more reports, and publish the ones queued."""
        self._closed = True
        if self._pump is not None:
            await self._queue.put(None)
            await self._pump
            self._pump = None

    async def _confirm_all(self) -> None:
        """Wait for every ack; send refused events again (same bytes, same event_id, so
        readers dedup) with backoff, for up to `RESEND_FOR_S`. A Kafka blip then delays the
        end of a run instead of leaving its request uncommitted until a restart."""
        deadline = self._loop.time() + RESEND_FOR_S
        delay = 0.5
        while True:
            if self._pending:
                await asyncio.wait([sent.future for sent in self._pending])
            await self._settle_done()
            if not self._failed:
                return
            first = self._failed[0].future
            error = "cancelled" if first.cancelled() else first.exception()
            if self._loop.time() >= deadline:
                raise EventsNotDeliveredError(
                    f"{len(self._failed)} events of run {self._run_id} were not acknowledged "
                    f"by Kafka within {RESEND_FOR_S:.0f}s: {error}"
                )
            log.warning(
                "run %s: %d events not acknowledged (%s); sending them again in %.1fs",
                self._run_id,
                len(self._failed),
                error,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESEND_MAX_DELAY_S)
            failed, self._failed = self._failed, []
            for sent in failed:
                try:
                    self._pending.append(await self._send(sent.value, sent.headers))
                except Exception as exc:  # noqa: BLE001 -- kept and retried on the next round
                    retry: asyncio.Future[RecordMetadata] = self._loop.create_future()
                    retry.set_exception(exc)
                    retry.exception()  # retrieved here; reported through `error` above
                    self._failed.append(_Sent(retry, sent.value, sent.headers))

    async def abort(self) -> None:
        """Stop without a terminal event (the attempt is abandoned for redelivery), after
        publishing what the attempt reported: its last logs say why it stopped and what it
        kept. A pump that cannot drain within `ABORT_DRAIN_S` (Kafka gone) is cancelled."""
        self._closed = True
        if self._pump is not None:
            try:
                async with asyncio.timeout(ABORT_DRAIN_S):
                    await self._queue.put(None)
                    await self._pump
                    if self._pending:  # sent, not yet acknowledged: the producer stops next
                        await asyncio.wait([sent.future for sent in self._pending])
            except TimeoutError:
                log.warning("run %s: reports not published before abandoning it", self._run_id)
            finally:
                self._pump.cancel()
                await asyncio.gather(self._pump, return_exceptions=True)
                self._pump = None

    async def _drain(self) -> None:
        while (item := await self._queue.get()) is not None:
            await self._publish(*item)

    async def _publish(self, event_type: str, payload: EventPayload) -> bytes:
        self._seq += 1
        event_type, value = self._encode(event_type, payload)
        self._pending.append(
            await self._send(value, [*self._headers, ("event-type", event_type.encode())])
        )
        if len(self._pending) >= 256:
            await self._settle_done()
        self._metrics.child(self._metrics.events_published, self._category, event_type).inc()
        return value

    def _encode(self, event_type: str, payload: EventPayload) -> tuple[str, bytes]:
        try:
            value = encode(self._event(event_type, payload))
        except (TypeError, ValueError, PydanticSerializationError) as exc:
            event_type, payload = self._repair(event_type, payload, f"not JSON-serializable: {exc}")
            value = encode(self._event(event_type, payload))
        if len(value) > self._publisher.max_message_bytes:
            reason = f"{len(value)} bytes, over RUNMESH_MAX_MESSAGE_BYTES"
            event_type, payload = self._repair(event_type, payload, reason)
            value = encode(self._event(event_type, payload))
        return event_type, value

    async def _send(self, value: bytes, headers: list[tuple[str, bytes]]) -> _Sent:
        future = await self._publisher.send_raw(
            self._topic, value, key=str(self._run_id), headers=headers
        )
        return _Sent(future, value, headers)

    async def _settle_done(self) -> None:
        # Keep the list short on long runs; refused events are kept to be sent again.
        still: list[_Sent] = []
        for sent in self._pending:
            if not sent.future.done():
                still.append(sent)
            elif sent.future.cancelled() or sent.future.exception() is not None:
                self._failed.append(sent)
        self._pending = still

    def _event(self, event_type: str, payload: EventPayload) -> RunEventBase:
        cls: Any = EVENT_TYPES[event_type]
        event: RunEventBase = cls(
            run_id=self._run_id,
            attempt=self._attempt,
            seq=self._seq,
            service=self._service,
            worker=self._worker,
            tenant=self._tenant,
            category=self._category,
            payload=payload,
        )
        return event

    def _repair(
        self, event_type: str, payload: EventPayload, problem: str
    ) -> tuple[str, EventPayload]:
        """Make an event that cannot be sent as is fit, saying so, instead of losing the run."""
        limit = self._publisher.max_message_bytes
        if isinstance(payload, LogPayload):
            return event_type, LogPayload(
                level=payload.level,
                message=payload.message[: limit // 2] + _TRUNCATED_SUFFIX,
                code=payload.code,
                data={"dropped": problem},
            )
        if isinstance(payload, SucceededPayload):
            return "run.failed", FailedPayload(
                error_type="InvalidResult",
                message=f"the result could not be sent ({problem}); return JSON data, and write "
                "large results to object storage and return their URI",
            )
        if isinstance(payload, FailedPayload):
            return event_type, FailedPayload(
                error_type=payload.error_type,
                message=payload.message[: limit // 4] + _TRUNCATED_SUFFIX,
                traceback=(payload.traceback or "")[-(limit // 4) :],
                retryable=payload.retryable,
            )
        return "run.log", LogPayload(
            level="warning", message=f"a {event_type} event was dropped: {problem}"
        )


def _terminal(outcome: Outcome) -> tuple[str, EventPayload]:
    if isinstance(outcome, Succeeded):
        return "run.succeeded", SucceededPayload(result=outcome.result)
    if isinstance(outcome, Failed):
        return "run.failed", FailedPayload(
            error_type=outcome.error_type,
            message=outcome.message,
            traceback=outcome.traceback,
            retryable=outcome.retryable,
        )
    if isinstance(outcome, Cancelled):
        return "run.cancelled", CancelledPayload(reason=outcome.reason)
    raise TypeError(f"not an outcome: {outcome!r}")
