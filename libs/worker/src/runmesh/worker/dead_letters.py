"""The category's dead-letter topic: requests that cannot be run, copied with why
(docs/events.md "Dead-lettered run requests")."""

from __future__ import annotations

from runmesh.core.kafka import Publisher
from runmesh.core.kafka.tracked_consumer import Record
from runmesh.worker.metrics import WorkerMetrics

_DETAIL_CHARS = 1000


class DeadLetters:
    """Copies request records, byte for byte, to one category's dead-letter topic."""

    def __init__(
        self, publisher: Publisher, topic: str, category: str, metrics: WorkerMetrics
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._category = category
        self._metrics = metrics

    async def copy(self, record: Record, reason: str, detail: str, *, source: bool) -> None:
        """Copy `record` with `reason` and `reason-detail` headers (and, with `source`, where
        it was read from); returns once the broker has it, raises if it could not."""
        headers = [
            *record.headers,
            ("reason", reason.encode()),
            ("reason-detail", detail[:_DETAIL_CHARS].encode()),
        ]
        if source:
            headers += [
                ("source-topic", record.topic.encode()),
                ("source-partition", str(record.partition).encode()),
                ("source-offset", str(record.offset).encode()),
            ]
        ack = await self._publisher.send_raw(
            self._topic, record.value, key=record.key, headers=headers
        )
        await ack
        self._metrics.child(self._metrics.dlq_records, self._category, reason).inc()
