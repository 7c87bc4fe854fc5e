"""The `runmesh dev` demo: submit a run over Kafka and show its events live in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TextIO

from aiokafka import AIOKafkaConsumer

from runmesh.common.events import (
    TERMINAL_EVENT_TYPES,
    RunEvent,
    RunFailed,
    RunLog,
    RunProgress,
    RunRequest,
    RunSucceeded,
    decode_event,
)
from runmesh.common.kafka import Publisher, consumer_config, make_producer, pin_to_latest
from runmesh.common.settings import Settings
from runmesh.common.topics import Topics

DEMO_TIMEOUT_S = 120.0
_BAR_WIDTH = 30


def _bar(current: float, total: float | None) -> str:
    if not total:
        return f"{current:g}"
    done = min(1.0, current / total)
    filled = round(done * _BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done:4.0%} {current:g}/{total:g}"


class EventPrinter:
    """Writes one run's events as a person reads them: a progress line, logs, the outcome."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._live = out.isatty()
        self._last_quarter = -1

    def show(self, event: RunEvent) -> None:
        """Print one event."""
        if isinstance(event, RunProgress):
            line = f"  {event.payload.category}: {_bar(event.payload.current, event.payload.total)}"
            if self._live:
                self._out.write("\r" + line)
            else:  # a log file or pipe: every quarter, not every update
                total = event.payload.total or 0
                quarter = int(4 * event.payload.current / total) if total else 0
                if quarter == self._last_quarter:
                    return
                self._last_quarter = quarter
                self._out.write(line + "\n")
        elif isinstance(event, RunLog):
            self._line(f"  [{event.payload.level}] {event.payload.message}")
        elif event.type == "run.started":
            self._line(f"  started on {event.worker} (attempt {event.attempt})")
        elif isinstance(event, RunSucceeded):
            self._line(f"demo: run {event.run_id} succeeded: {event.payload.result}")
        elif isinstance(event, RunFailed):
            self._line(
                f"demo: run {event.run_id} failed: {event.payload.error_type}: "
                f"{event.payload.message}"
            )
        elif event.type == "run.cancelled":
            self._line(f"demo: run {event.run_id} was cancelled")
        self._out.flush()

    def _line(self, text: str) -> None:
        self._out.write(("\n" if self._live else "") + text + ("" if self._live else "\n"))
        if self._live:
            self._out.write("\n")


async def run_demo(settings: Settings, out: TextIO) -> RunEvent:
    """Submit the demo run straight to Kafka (as any producer may) and follow it to its end."""
    topics = Topics(settings.topic_prefix)
    request = RunRequest(category="demo", plugin="hello", action="count", params={"to": 30})
    events = AIOKafkaConsumer(topics.events, **consumer_config(settings, group_id=None))
    producer = make_producer(settings, client_id="runmesh-dev-demo")
    async with contextlib.AsyncExitStack() as stack:
        await events.start()
        stack.push_async_callback(events.stop)
        await producer.start()
        stack.push_async_callback(producer.stop)
        await pin_to_latest(events, timeout_s=settings.kafka_request_timeout_ms / 1000)
        publisher = Publisher(producer, max_message_bytes=settings.max_message_bytes)
        ack = await publisher.send(
            topics.requests(request.category), request, key=str(request.run_id)
        )
        await ack
        out.write(f"demo: submitted run {request.run_id} (hello.count) to Kafka\n")
        out.flush()
        printer = EventPrinter(out)
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            while True:
                batches = await events.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        event = decode_event(record.value or b"")
                        if event.run_id != request.run_id:
                            continue
                        printer.show(event)
                        if event.type in TERMINAL_EVENT_TYPES:
                            return event
