"""What tenants have published: a worker's view of the gateway's announcements on
`runmesh.plugins`, read from the start of the topic and kept up to date."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from runmesh.core.errors import DecodeError
from runmesh.core.events import PluginManifest, decode
from runmesh.core.kafka import make_consumer, pin_to_latest
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics
from runmesh.plugins.versions import version_key

log = logging.getLogger(__name__)

_FETCH_TIMEOUT_MS = 500


class PublishedPlugins:
    """Published plugin versions by tenant, code and version (the latest announcement wins;
    a deletion removes the version).

    Every worker reads the whole topic (no consumer group): announcements are few and small.
    `find` first catches up with the topic's end as of the call, so a run submitted right
    after its plugin was published finds it.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._topic = Topics(kafka.topic_prefix).plugins
        self._versions: dict[tuple[str, str], dict[str, PluginManifest]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        """Join the topic and read it from its first record (in `run`)."""
        consumer = make_consumer(
            self._kafka, self._topic, group_id=None, client_id="published-plugins"
        )
        await consumer.start()
        try:
            # Waits for the partitions (raising TimeoutError), then rewinds to the first record.
            await pin_to_latest(consumer, timeout_s=self._kafka.request_timeout_ms / 1000)
            await consumer.seek_to_beginning()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the topic."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        """Apply announcements until cancelled."""
        consumer = self._require_consumer()
        while True:
            batches = await consumer.getmany(timeout_ms=_FETCH_TIMEOUT_MS)
            for records in batches.values():
                for record in records:
                    self._apply(record.value or b"", record.offset)
            async with self._progress:
                self._progress.notify_all()

    async def find(self, tenant: str, code: str, version: str | None) -> PluginManifest | None:
        """The published version a request names (`version` None: the highest one), or None."""
        await self._catch_up()
        versions = self._versions.get((tenant, code), {})
        if version is not None:
            return versions.get(version)
        if not versions:
            return None
        return versions[max(versions, key=version_key)]

    def _apply(self, value: bytes, offset: int) -> None:
        try:
            manifest = decode(value, PluginManifest)
        except DecodeError as exc:
            log.warning("skipping %s@%d: %s", self._topic, offset, exc)
            return
        if manifest.archive is None:
            return  # a worker's own plugin: every worker loads those from its plugin path
        versions = self._versions.setdefault((manifest.tenant, manifest.code), {})
        if manifest.deleted:
            versions.pop(manifest.version, None)
        else:
            versions[manifest.version] = manifest

    async def _catch_up(self) -> None:
        """Wait until every record written before this call has been applied."""
        consumer = self._require_consumer()
        timeout_s = self._kafka.request_timeout_ms / 1000
        async with asyncio.timeout(timeout_s):
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while True:
                positions = {tp: await consumer.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    return
                # `run` notifies after every fetch (at least every 500 ms), so a notification
                # missed between the check and the wait costs one fetch interval at most.
                async with self._progress:
                    await self._progress.wait()

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("PublishedPlugins.start() was not called")
        return self._consumer
