"""Create the topics a process needs, tolerating topics that already exist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from runmesh.core.kafka.clients import connection_config
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics


async def ensure_topics(
    kafka: KafkaSettings, topics: Iterable[str], *, partitions: int | None = None
) -> None:
    """Create each missing topic with the configured partitions and replication factor."""
    wanted = sorted(set(topics))
    configs = Topics(kafka.topic_prefix).creation_configs()
    # The producers' and consumers' connection settings: a broker that needs TLS or SASL
    # needs them from the admin client too.
    admin = AIOKafkaAdminClient(**connection_config(kafka))
    async with asyncio.timeout(kafka.request_timeout_ms / 1000):
        await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions or kafka.topic_partitions,
                replication_factor=kafka.topic_replication_factor,
                topic_configs=configs.get(name, {}),
            )
            for name in wanted
            if name not in existing
        ]
        if missing:
            # Another replica may create one between our list and create: what we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
