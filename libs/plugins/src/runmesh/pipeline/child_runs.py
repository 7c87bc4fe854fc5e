"""Run another category's action from inside a run, over the mesh, and wait for its end.

A to_task run that pre-annotates with a model does not load the model itself: it submits an
`inference` run to the neural_net category (any Kafka producer may), with `parent_run_id`
set, and follows that child's events on `runmesh.events` until its terminal event. The
child is an ordinary run: it shows in the gateway, can be cancelled, and runs isolated in
its own service's job process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from runmesh.core.errors import DecodeError, RunmeshError
from runmesh.core.events import (
    TERMINAL_EVENT_TYPES,
    CancelRun,
    RunEventBase,
    RunRequest,
    decode_event,
    encode,
)
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics

log = logging.getLogger(__name__)

_POLL_MS = 200
_START_TIMEOUT_S = 60.0


class ChildRunError(RunmeshError):
    """The child run could not be submitted or did not end in time."""


class ChildRunCancelled(ChildRunError):
    """The parent was cancelled; the child was sent a cancel request."""


async def run_child(
    settings: Settings,
    request: RunRequest,
    *,
    timeout_s: float,
    is_cancelled: Callable[[], bool],
    on_event: Callable[[RunEventBase], None] | None = None,
) -> RunEventBase:
    """Submit `request` and return its terminal event (succeeded, failed or cancelled).

    Every event of the child goes to `on_event` as it arrives. When `is_cancelled()` turns
    true, or `timeout_s` passes, the child is sent a cancel request and `ChildRunCancelled`
    or `ChildRunError` is raised without waiting for it to stop.
    """
    if settings.kafka_bootstrap is None:
        # A tenant's published code holds no Kafka credential (docs/security.md).
        raise ChildRunError(
            f"a published plugin's run cannot start child runs yet ({request.category} "
            f"{request.action}): run it with the built-in plugin, or from a plugin on the "
            "workers' RUNMESH_PLUGIN_PATH"
        )
    topics = Topics(settings.topic_prefix)
    await ensure_topics(
        settings.kafka, [topics.requests(request.category), topics.events, topics.control]
    )
    consumer = AIOKafkaConsumer(
        **consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "latest"}
    )
    producer = make_producer(settings.kafka, client_id="runmesh-child-runs")
    async with contextlib.AsyncExitStack() as stack:
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        await producer.start()
        stack.push_async_callback(producer.stop)
        # Fix the start position before submitting, or the child's first events could be
        # produced before the consumer looks for the end of the topic.
        partitions = consumer.partitions_for_topic(topics.events) or set()
        assigned = [TopicPartition(topics.events, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)
        key = str(request.run_id).encode()

        async def cancel(reason: str) -> None:
            cancel_request = CancelRun(run_id=request.run_id, tenant=request.tenant, reason=reason)
            await producer.send_and_wait(topics.control, encode(cancel_request), key=key)

        await producer.send_and_wait(topics.requests(request.category), encode(request), key=key)
        deadline = time.monotonic() + timeout_s
        while True:
            if is_cancelled():
                await cancel("the parent run was cancelled")
                raise ChildRunCancelled(f"child run {request.run_id} cancelled with its parent")
            if time.monotonic() > deadline:
                await cancel(f"the parent's {timeout_s:.0f}s limit passed")
                raise ChildRunError(
                    f"child run {request.run_id} ({request.category}/{request.action}) did not "
                    f"end within {timeout_s:.0f}s; is a {request.category} service running?"
                )
            batches = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batches.values():
                for record in records:
                    if record.key != key:
                        continue
                    try:
                        event = decode_event(record.value or b"")
                    except DecodeError:
                        log.warning("skipping an undecodable event of child run %s", key)
                        continue
                    if on_event is not None:
                        on_event(event)
                    if event.type in TERMINAL_EVENT_TYPES:
                        return event
