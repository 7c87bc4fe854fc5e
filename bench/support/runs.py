"""A category's worker with its built-in plugin in the bench's own process, and runs on it
timed from their events on `runmesh.events`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer

from runmesh.core.events import RunRequest, decode_event, encode
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer, pin_to_latest
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.worker import Worker
from runmesh.worker.process import build_registry


@dataclass(slots=True, frozen=True)
class Ended:
    """A run that succeeded: when its request was produced (this host's clock, as the
    in-process worker's events are), when it started and ended, its result, and when each
    log code asked for was logged."""

    produced: datetime
    started: datetime
    ended: datetime
    result: dict[str, Any]
    marks: dict[str, datetime]

    def began(self, *, from_request: bool) -> datetime:
        """`run.started`, or the request's produce (`from_request`)."""
        return self.produced if from_request else self.started

    def seconds(self, *, from_request: bool = False) -> float:
        """Seconds to `run.succeeded` from `run.started`, or from the request's produce."""
        return (self.ended - self.began(from_request=from_request)).total_seconds()


class BenchWorker:
    """`async with BenchWorker(...) as worker`: an in-process `Worker` of `category` with the
    built-in plugin at `builtin` (it also runs the tenant's published versions), a producer
    of requests and a reader of the events from now on."""

    def __init__(self, settings: Settings, category: str, builtin: Path, *, service: str) -> None:
        self.settings = settings
        self.category = category
        self.topics = Topics(settings.topic_prefix)
        registry = build_registry(settings, [builtin])
        self.worker = Worker(category, registry, settings, service=service)
        self.consumer = AIOKafkaConsumer(
            self.topics.events, **consumer_config(settings.kafka, group_id=None)
        )
        self.producer = make_producer(settings.kafka)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BenchWorker:
        topics = self.topics
        await ensure_topics(
            self.settings.kafka,
            [topics.requests(self.category), topics.events, topics.control, topics.plugins],
        )
        self._task = asyncio.create_task(self.worker.run())
        async with asyncio.timeout(60):
            await self.worker.ready.wait()
        await self.consumer.start()
        await self.producer.start()
        await pin_to_latest(self.consumer, timeout_s=30)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.producer.stop()
        await self.consumer.stop()
        self.worker.request_stop()
        if self._task is not None:
            async with asyncio.timeout(60):
                await self._task

    async def run(
        self, request: RunRequest, *, label: str, timeout_s: float, codes: Iterable[str] = ()
    ) -> Ended:
        """Produce `request` and wait for its end; RuntimeError unless it succeeds."""
        wanted = set(codes)
        produced = datetime.now(UTC)
        await self.producer.send_and_wait(
            self.topics.requests(self.category), encode(request), key=str(request.run_id).encode()
        )
        started: datetime | None = None
        marks: dict[str, datetime] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not end within {timeout_s:.0f} s")
            batches = await self.consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = decode_event(record.value or b"")
                    if event.run_id != request.run_id:
                        continue
                    if event.type == "run.started":
                        started = event.ts
                    elif event.type == "run.log" and event.payload.code in wanted:
                        marks[event.payload.code] = event.ts
                    elif event.type == "run.succeeded":
                        if started is None:
                            raise RuntimeError(f"{label} succeeded without run.started")
                        result = event.payload.result
                        return Ended(produced, started, event.ts, result, marks)
                    elif event.type in ("run.failed", "run.cancelled"):
                        raise RuntimeError(f"{label} ended {event.type}: {event.payload}")
