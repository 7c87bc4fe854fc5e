"""The loop of a gateway consumer that handles a topic's records in batches and commits after
each: the plugin catalog and the pipeline requests share it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from runmesh.core.errors import DecodeError
from runmesh.core.events import decode
from runmesh.core.kafka import commit_owned, ensure_topics, make_consumer
from runmesh.core.settings_parts import KafkaSettings

Records = Sequence[ConsumerRecord[bytes, bytes]]
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def decoded(records: Records, model: type[M]) -> list[M]:
    """The records' values as `model`, in order; an undecodable one is logged and skipped:
    one bad record must not hide the others."""
    messages = []
    for record in records:
        try:
            messages.append(decode(record.value or b"", model))
        except DecodeError as exc:
            log.warning(
                "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
            )
    return messages


async def consume_batches(
    kafka: KafkaSettings,
    topic: str,
    *,
    group_id: str,
    client_id: str,
    max_records: int,
    handle: Callable[[Records], Awaitable[None]],
) -> None:
    """Consume `topic` in `group_id` until cancelled: each batch (in partition order) goes to
    `handle`, then its offsets are committed, so a crash between the two redoes the batch and
    `handle` must be safe to repeat. Raises on a lasting Kafka or PostgreSQL failure (the
    gateway's supervisor restarts the loop)."""
    timeout_s = kafka.request_timeout_ms / 1000
    await ensure_topics(kafka, [topic])
    consumer = make_consumer(kafka, topic, group_id=group_id, client_id=client_id)
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            if not batches:
                continue
            await handle([record for records in batches.values() for record in records])
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await commit_owned(consumer, offsets, timeout_s=timeout_s)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await consumer.stop()
