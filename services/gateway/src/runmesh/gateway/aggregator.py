"""The event aggregator (DESIGN §5): run events from Kafka into run_events and run rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from pydantic import TypeAdapter, ValidationError

from runmesh.core.events import TERMINAL_STATES, RunEvent
from runmesh.core.kafka import (
    commit_owned,
    ensure_topics,
    make_consumer,
    wait_for_assignment,
)
from runmesh.core.notices import RunNotice
from runmesh.core.retries import retried
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.topics import Topics
from runmesh.core.validation import describe_errors
from runmesh.gateway import runs_store
from runmesh.gateway.pipelines.forward import advance
from runmesh.gateway.run_state import apply_events
from runmesh.gateway.runs_store import LockedRun, RunUpdate

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]

_EVENT_ADAPTER: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)
_INT4_MAX = 2**31 - 1
_DB_ATTEMPTS = 3  # a deadlock (two aggregators during a rebalance) is retried in place

# ORDER BY ord keeps the stream order, so one run's ids grow with its (attempt, seq).
_INSERT_EVENTS = """
INSERT INTO runs.run_events
    (event_id, run_id, tenant, attempt, seq, type, ts, service, worker, payload)
SELECT e.event_id, e.run_id, e.tenant, e.attempt, e.seq, e.type, e.ts, e.service, e.worker,
       e.payload::jsonb
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int4[], $6::text[],
            $7::timestamptz[], $8::text[], $9::text[], $10::text[])
     WITH ORDINALITY AS e(event_id, run_id, tenant, attempt, seq, type, ts, service, worker,
                          payload, ord)
ORDER BY e.ord
ON CONFLICT (event_id) DO NOTHING
RETURNING id, event_id, run_id
"""


@dataclass(slots=True, frozen=True)
class DecodedEvent:
    """A valid run event and its payload as JSON text (stored as received, unknown fields too)."""

    event: RunEvent
    payload_json: str


def decode_record(value: bytes) -> DecodedEvent:
    """Parse and validate one record of the events topic; raise ValueError when it is invalid.

    orjson parses once and pydantic validates the dict: the payload text stored is the
    record's own payload, so fields newer than this gateway survive for newer readers.
    """
    data = orjson.loads(value)
    if b"\\u0000" in value:
        # PostgreSQL text and jsonb cannot hold NUL; dropping it beats stalling the aggregator.
        data = _without_nul(data)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 -- one error type for bad records
    try:
        event = _EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        detail = describe_errors(exc.errors(include_url=False), root="(event)", limit=3)
        raise ValueError(f"not a valid RunEvent: {detail}") from exc
    if event.attempt > _INT4_MAX or event.seq > _INT4_MAX:
        raise ValueError("attempt or seq out of range")
    return DecodedEvent(event, orjson.dumps(data["payload"]).decode())


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


@dataclass(slots=True, frozen=True)
class _Batch:
    events: list[DecodedEvent]
    offsets: dict[TopicPartition, int]  # the next offset to read, per partition


class Aggregator:
    """Turns `runmesh.events` into `runs.run_events` rows and run state (DESIGN §5).

    Each fetched batch is one transaction: placeholder rows for runs first seen, the batch's
    run rows locked, events inserted with `ON CONFLICT (event_id) DO NOTHING`, the state machine
    applied to the rows that insert created, run rows updated, one NOTIFY per run with new
    events; then the offsets are committed. A crash anywhere redelivers the batch and the dedup
    makes the redo a no-op, so the rows end up as if every event was applied exactly once.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        pool: asyncpg.Pool,
        *,
        default_tenant: str = "default",
        max_records: int = 5000,
        on_requests: Callable[[], None] | None = None,
        on_ended: Callable[[], None] | None = None,
    ) -> None:
        self._kafka = kafka
        # Called after a batch that stored pipeline steps' requests (the relay's wake).
        self._on_requests = on_requests
        # Called after a batch in which runs ended (a held run's tenant may have room now).
        self._on_ended = on_ended
        self._default_tenant = default_tenant
        self._pool = pool
        self._max_records = max_records
        self._topics = Topics(kafka.topic_prefix)
        self._topic = self._topics.events
        self.ready = asyncio.Event()
        """Set once the consumer has its partitions (or gave up waiting for them)."""
        self.events_stored = 0
        """Events this instance inserted (duplicates not counted)."""
        self.records_skipped = 0
        """Records that were not valid run events (logged and skipped)."""

    @property
    def group_id(self) -> str:
        """The consumer group shared by every gateway replica."""
        return f"{self._kafka.topic_prefix}-gateway"

    async def run(self) -> None:
        """Consume until cancelled; raises on a lasting Kafka or PostgreSQL failure."""
        kafka = self._kafka
        timeout_s = kafka.request_timeout_ms / 1000
        await ensure_topics(kafka, [self._topic])
        consumer = make_consumer(
            kafka, self._topic, group_id=self.group_id, client_id="gateway-aggregator"
        )
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.start()
            await wait_for_assignment(consumer, 2 * kafka.session_timeout_ms / 1000)
            self.ready.set()
            # Two stages so that decoding the next batch (Python) overlaps PostgreSQL writing
            # this one (another core); the queue bound keeps at most three batches in memory
            # (one being stored, one queued, one decoded and waiting for the queue).
            queue: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=1)
            try:
                async with asyncio.TaskGroup() as stages:
                    stages.create_task(self._fetch_and_decode(consumer, queue))
                    stages.create_task(self._store_and_commit(consumer, queue, timeout_s))
            except ExceptionGroup as failed:  # one stage failed, the other was cancelled
                raise failed.exceptions[0] from None
        finally:
            self.ready.clear()
            # Leaving the group now hands the partitions over at once instead of after the
            # session timeout; uncommitted records are redone by the next owner.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await consumer.stop()

    async def _fetch_and_decode(
        self, consumer: AIOKafkaConsumer, queue: asyncio.Queue[_Batch]
    ) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self._max_records)
            if batches:
                records = [r for records in batches.values() for r in records]
                offsets = {tp: part[-1].offset + 1 for tp, part in batches.items()}
                await queue.put(_Batch(self.decode(records), offsets))

    async def _store_and_commit(
        self, consumer: AIOKafkaConsumer, queue: asyncio.Queue[_Batch], timeout_s: float
    ) -> None:
        while True:
            batch = await queue.get()
            if batch.events:
                await self.store(batch.events)
            await commit_owned(consumer, batch.offsets, timeout_s=timeout_s)

    def decode(self, records: Sequence[Record]) -> list[DecodedEvent]:
        """The valid, distinct run events of a batch, in partition order; the rest is logged."""
        decoded: list[DecodedEvent] = []
        seen: set[uuid.UUID] = set()
        for record in records:
            if record.value is None:
                self._skip(record, "no value")
                continue
            try:
                item = decode_record(record.value)
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError too
                self._skip(record, str(exc))
                continue
            if item.event.event_id not in seen:  # a republished terminal event, for one
                seen.add(item.event.event_id)
                decoded.append(item)
        return decoded

    def _skip(self, record: Record, reason: str) -> None:
        self.records_skipped += 1
        log.warning(
            "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason[:500]
        )

    async def store(self, events: Sequence[DecodedEvent]) -> None:
        """Write decoded events and their runs' new state in one transaction, retrying briefly.

        A batch PostgreSQL refuses for its data (a value it cannot store) is split so the bad
        event alone is logged and skipped instead of stalling every run behind it.
        """
        try:
            await self._store_with_retries(events)
        except asyncpg.DataError:
            if len(events) == 1:
                log.exception("skipping event %s: PostgreSQL refused it", events[0].event.event_id)
                self.records_skipped += 1
                return
            for event in events:
                await self.store([event])

    async def _store_with_retries(self, events: Sequence[DecodedEvent]) -> None:
        await retried(
            "aggregator.store",
            lambda: self._store_once(events),
            on=(asyncpg.DeadlockDetectedError, asyncpg.SerializationError),
            attempts=_DB_ATTEMPTS,
            wait_initial_s=0.05,
            wait_max_s=1.0,
        )

    async def _store_once(self, events: Sequence[DecodedEvent]) -> None:
        # A run first seen here is filed under its first event's tenant and category (events
        # of older producers carry neither: the default tenant, and the service's name).
        runs: dict[uuid.UUID, tuple[str, str]] = {}
        for item in events:
            event = item.event
            if event.run_id not in runs:
                tenant = event.tenant or self._default_tenant
                runs[event.run_id] = (tenant, event.category or event.service)
        async with (
            self._pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
            conn.transaction(),
        ):
            await runs_store.insert_kafka_runs(conn, runs, self._topics.prefix)
            rows = await runs_store.lock_runs(conn, list(runs))
            cols = _event_columns(events, rows)
            inserted = await conn.fetch(_INSERT_EVENTS, *cols)
            if not inserted:
                return  # a redelivered batch: everything was stored and applied already
            updates = _apply(events, rows, inserted)
            await runs_store.update_runs(conn, updates)
            # Pipelines whose steps just ended move on in this same transaction: a redone
            # batch finds them moved already, so no step is submitted twice.
            ended = [update.notice.run_id for update in updates if update.notice.terminal]
            submitted = await advance(conn, self._topics, ended)
        self.events_stored += len(inserted)
        if submitted and self._on_requests is not None:
            self._on_requests()
        if ended and self._on_ended is not None:
            self._on_ended()


def _event_columns(
    events: Sequence[DecodedEvent], rows: Mapping[uuid.UUID, LockedRun]
) -> list[list[Any]]:
    tenants = {run_id: row.tenant for run_id, row in rows.items()}
    columns: list[list[Any]] = [[] for _ in range(10)]
    (event_ids, run_ids, tenant_col, attempts, seqs, types, tss, services, workers, payloads) = (
        columns
    )
    for item in events:
        event = item.event
        event_ids.append(event.event_id)
        run_ids.append(event.run_id)
        tenant_col.append(tenants[event.run_id])
        attempts.append(event.attempt)
        seqs.append(event.seq)
        types.append(event.type)
        tss.append(event.ts)
        services.append(event.service)
        workers.append(event.worker)
        payloads.append(item.payload_json)
    return columns


def _apply(
    events: Sequence[DecodedEvent],
    rows: Mapping[uuid.UUID, LockedRun],
    inserted: Sequence[asyncpg.Record],
) -> list[RunUpdate]:
    """The state machine over the newly inserted events: each touched run's new row."""
    last_id: dict[uuid.UUID, int] = {}
    for row in inserted:
        run_id = row["run_id"]
        last_id[run_id] = max(row["id"], last_id.get(run_id, 0))
    new_events: dict[uuid.UUID, list[RunEvent]] = {run_id: [] for run_id in last_id}
    if len(inserted) == len(events):
        for item in events:
            new_events[item.event.run_id].append(item.event)
    else:
        fresh = {row["event_id"] for row in inserted}
        for item in events:
            if item.event.event_id in fresh:
                new_events[item.event.run_id].append(item.event)
    updates = []
    for run_id, applied in new_events.items():
        row = rows[run_id]
        after = apply_events(row.snapshot, applied)
        kafka = row.submitted_via == "kafka"
        # Category, action and plugin of a REST run are as requested; a Kafka run's come from
        # its run.started (the request itself never reaches the gateway).
        action = row.action if row.action or not kafka else (after.action or "")
        plugin = row.plugin if row.plugin is not None or not kafka else after.plugin
        notice = RunNotice(
            tenant=row.tenant,
            run_id=run_id,
            last_id=last_id[run_id],
            terminal=after.state in TERMINAL_STATES,
        )
        updates.append(RunUpdate(snapshot=after, action=action, plugin=plugin, notice=notice))
    return updates
