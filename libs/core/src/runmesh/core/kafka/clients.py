"""Build aiokafka producers and consumers from `Settings` with runmesh's delivery choices."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord, TopicPartition

from runmesh.core.errors import ConfigurationError
from runmesh.core.settings_parts import KafkaSettings

_log = logging.getLogger(__name__)

# Headers, key and record framing on top of the value; the value bound is ours (Tansu does
# not enforce max.message.bytes), the request bound only has to let such a record through.
_RECORD_OVERHEAD_BYTES = 64 * 1024


def connection_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Where the brokers are and how to authenticate: what every aiokafka client shares.

    Producers, consumers and the admin client are all built from this, so TLS and SASL
    apply to each of them the same way.
    """
    if not kafka.bootstrap:
        raise ConfigurationError(
            "RUNMESH_KAFKA_BOOTSTRAP is not set (start the sandbox with `runmesh dev`)"
        )
    # Kafka's own clients accept the protocol in any case; aiokafka only in upper case.
    protocol = kafka.security_protocol.upper()
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "request_timeout_ms": kafka.request_timeout_ms,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        # aiokafka refuses SSL without a context. The default one verifies the broker against
        # the system CA store (or the bundle named by SSL_CERT_FILE) and checks its hostname.
        config["ssl_context"] = create_ssl_context()
    if kafka.sasl_mechanism:
        config["sasl_mechanism"] = kafka.sasl_mechanism
        config["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            config["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return config


def make_producer(kafka: KafkaSettings, *, client_id: str = "runmesh") -> AIOKafkaProducer:
    """A producer tuned for throughput without giving up durability.

    acks=all so an acknowledged event survives a broker failover; linger and large batches so
    many small events share one request; idempotence only where the broker is trusted with it.
    """
    return AIOKafkaProducer(
        **connection_config(kafka),
        client_id=client_id,
        acks="all",
        linger_ms=kafka.linger_ms,
        max_batch_size=kafka.max_batch_bytes,
        max_request_size=max(kafka.max_message_bytes + _RECORD_OVERHEAD_BYTES, 1024 * 1024),
        enable_idempotence=kafka.idempotence,
    )


def consumer_config(kafka: KafkaSettings, *, group_id: str | None) -> dict[str, Any]:
    """Keyword arguments for an `AIOKafkaConsumer` with manual commits."""
    return {
        **connection_config(kafka),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest" if group_id else "latest",
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "max_partition_fetch_bytes": max(
            kafka.max_message_bytes + _RECORD_OVERHEAD_BYTES, 1024 * 1024
        ),
    }


def make_consumer(
    kafka: KafkaSettings, *topics: str, group_id: str | None, client_id: str = "runmesh"
) -> AIOKafkaConsumer:
    """A consumer with auto-commit off: offsets are committed by the code that finished the work."""
    return AIOKafkaConsumer(
        *topics, client_id=client_id, **consumer_config(kafka, group_id=group_id)
    )


async def wait_for_assignment(consumer: AIOKafkaConsumer, timeout_s: float) -> bool:
    """Wait until the consumer owns partitions; False if none came within `timeout_s`.

    aiokafka offers no event for it, hence the short poll. A new group's first join takes
    seconds (the broker waits for more members), and with more members than partitions a
    member legitimately gets none: callers decide whether that is an error.
    """
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def pin_to_latest(consumer: AIOKafkaConsumer, *, timeout_s: float) -> None:
    """Wait for a group-less consumer's partitions and resolve its "latest" positions now.

    Positions are otherwise resolved lazily at the first fetch, so a record produced between
    start-up and that fetch would be skipped: a cancel, or the events of a run just submitted.
    """
    if not await wait_for_assignment(consumer, timeout_s):
        raise TimeoutError(f"no partitions of {consumer.subscription()} were assigned")
    for tp in consumer.assignment():
        await consumer.position(tp)


async def replay_from_start(
    consumer: AIOKafkaConsumer,
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    timeout_s: float,
) -> int:
    """Hand `apply` every retained record of a group-less consumer's topic, from its first to
    the last written before this call; return how many. The consumer then goes on from there.

    For state a process must know before it acts, whatever it missed while it was down: the
    cancels of runs still queued. TimeoutError if the partitions or the records do not come
    within `timeout_s`.
    """
    async with asyncio.timeout(timeout_s):
        if not await wait_for_assignment(consumer, timeout_s):
            raise TimeoutError(f"no partitions of {consumer.subscription()} were assigned")
        partitions = list(consumer.assignment())
        # Settle the start position first: a reset still in flight would land after a seek
        # and move the consumer back to the end.
        for tp in partitions:
            await consumer.position(tp)
        for tp, first in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, first)
        ends = await consumer.end_offsets(partitions)
        applied = 0
        behind = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
        while behind:
            batches = await consumer.getmany(*behind, timeout_ms=200)
            for records in batches.values():
                for record in records:
                    apply(record)
                    applied += 1
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        return applied


async def commit_owned(
    consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int], *, timeout_s: float
) -> bool:
    """Commit `offsets` of the partitions the consumer still owns; False if that failed.

    For consumers whose work is idempotent: a commit lost to a rebalance or a timeout only
    means the next owner redoes the batch, so the failure is logged, not raised.
    """
    owned = consumer.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not mine:
        return True
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.commit(mine)
    except (KafkaError, TimeoutError) as exc:
        _log.warning("offset commit failed (the batch will be redone): %s", exc)
        return False
    return True
