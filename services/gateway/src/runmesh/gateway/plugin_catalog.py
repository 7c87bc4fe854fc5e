"""The plugin catalog loop: manifests announced on `runmesh.plugins` into `runs.plugins`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiokafka.structs import ConsumerRecord

from runmesh.core.errors import DecodeError
from runmesh.core.events import PluginManifest, decode
from runmesh.core.kafka import commit_owned, ensure_topics, make_consumer
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics
from runmesh.gateway.runs_store import DB_TIMEOUT_S

log = logging.getLogger(__name__)


# '*': a manifest announced by a worker serves every tenant. The latest announcement of a
# version wins (a worker restarted with a rebuilt plugin of the same version).
_UPSERT_PLUGIN = """
INSERT INTO runs.plugins (tenant, code, version, category, builtin, manifest, announced_at)
VALUES ('*', $1, $2, $3, $4, $5, now())
ON CONFLICT (tenant, code, version) DO UPDATE SET
    category = EXCLUDED.category,
    builtin = EXCLUDED.builtin,
    manifest = EXCLUDED.manifest,
    announced_at = EXCLUDED.announced_at
"""


class PluginCatalog:
    """Keeps `runs.plugins` up to date with what workers announce (DESIGN §5, §6).

    Every gateway replica shares one consumer group that reads the topic from the earliest
    record, so a new deployment learns every plugin announced before it started. Undecodable
    records are logged and skipped: one bad announcement must not hide the others.
    """

    def __init__(self, kafka: KafkaSettings, pool: asyncpg.Pool) -> None:
        self._kafka = kafka
        self._pool = pool
        self._topic = Topics(kafka.topic_prefix).plugins
        self.manifests_stored = 0
        """Manifests upserted by this instance."""

    @property
    def group_id(self) -> str:
        """The consumer group shared by every gateway replica."""
        return f"{self._kafka.topic_prefix}-gateway-plugins"

    async def run(self) -> None:
        """Consume until cancelled; raises on a lasting Kafka or PostgreSQL failure."""
        kafka = self._kafka
        timeout_s = kafka.request_timeout_ms / 1000
        await ensure_topics(kafka, [self._topic])
        consumer = make_consumer(
            kafka, self._topic, group_id=self.group_id, client_id="gateway-plugins"
        )
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                if not batches:
                    continue
                await self.store([r for records in batches.values() for r in records])
                # A lost commit redoes the batch; the upsert makes that harmless.
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await commit_owned(consumer, offsets, timeout_s=timeout_s)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await consumer.stop()

    async def store(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Upsert the manifests among `records`, in order, in one transaction."""
        rows = []
        for record in records:
            try:
                manifest = decode(record.value or b"", PluginManifest)
            except DecodeError as exc:
                log.warning(
                    "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
                )
                continue
            if manifest.archive is not None:
                continue  # a tenant's published version: the gateway stored it when publishing
            rows.append(
                (
                    manifest.code,
                    manifest.version,
                    manifest.category,
                    manifest.builtin,
                    manifest.model_dump(mode="json"),
                )
            )
        if not rows:
            return
        async with self._pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
            await conn.executemany(_UPSERT_PLUGIN, rows)
        self.manifests_stored += len(rows)
