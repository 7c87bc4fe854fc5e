"""The plugin catalog loop: manifests announced on `runmesh.plugins` into `runs.plugins`."""

from __future__ import annotations

import logging

import asyncpg

from runmesh.core.events import PluginManifest
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics
from runmesh.gateway.consume import Records, consume_batches, decoded
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
        """Consume until cancelled; raises on a lasting Kafka or PostgreSQL failure. A lost
        commit redoes a batch; the upsert makes that harmless."""
        await consume_batches(
            self._kafka,
            self._topic,
            group_id=self.group_id,
            client_id="gateway-plugins",
            max_records=500,
            handle=self.store,
        )

    async def store(self, records: Records) -> None:
        """Upsert the manifests among `records`, in order, in one transaction."""
        rows = []
        for manifest in decoded(records, PluginManifest):
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
