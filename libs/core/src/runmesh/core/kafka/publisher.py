"""Publish wire messages with runmesh's headers and record-size bound."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel

from runmesh.core.errors import MessageTooLargeError
from runmesh.core.events import encode
from runmesh.core.telemetry import inject_headers, sending_in_trace


class Publisher:
    """Sends records without waiting per message: `send` returns the delivery future.

    The caller awaits the futures it needs acknowledged (a run's terminal event before its
    offset is committed), so thousands of events share batches instead of round trips.
    """

    def __init__(self, producer: AIOKafkaProducer, *, max_message_bytes: int) -> None:
        self._producer = producer
        self._max = max_message_bytes

    @property
    def max_message_bytes(self) -> int:
        """The largest value this publisher accepts."""
        return self._max

    def check_size(self, value: bytes, what: str) -> None:
        """Refuse a value over the bound with a message that says what to do instead."""
        if len(value) > self._max:
            raise MessageTooLargeError(
                f"{what} is {len(value)} bytes, over RUNMESH_MAX_MESSAGE_BYTES={self._max}; "
                "write large data to object storage and send its URI"
            )

    async def send(
        self,
        topic: str,
        message: BaseModel,
        *,
        key: str | None,
        event_type: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Encode and enqueue `message`; return the future of its acknowledgement."""
        value = encode(message)
        self.check_size(value, f"{type(message).__name__} for {topic}")
        all_headers = list(headers) if headers is not None else inject_headers()
        if event_type is not None:
            all_headers.append(("event-type", event_type.encode()))
        return await self.send_raw(topic, value, key=key, headers=all_headers)

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: str | bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue bytes as they are (DLQ copies, replayed events)."""
        raw_key = key.encode() if isinstance(key, str) else key
        with sending_in_trace(headers or []) as traced:
            future: asyncio.Future[RecordMetadata] = await self._producer.send(
                topic, value=value, key=raw_key, headers=traced
            )
        return future
