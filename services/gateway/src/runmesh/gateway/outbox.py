"""Transactional outbox: Kafka writes stored with the state change, published by a relay.

HTTP handlers never talk to Kafka. They insert an `runs.outbox` row in the same transaction
as the run it belongs to, so a run exists exactly when its request will be published; the
relay publishes rows in id order, waits for acks=all and marks them sent. Kafka being down
delays runs and never loses them (DESIGN §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel

from runmesh.core.events import encode
from runmesh.core.kafka import ensure_topics, make_producer
from runmesh.core.settings_parts import KafkaSettings
from runmesh.core.telemetry import inject_headers, sending_in_trace
from runmesh.gateway import runs_store
from runmesh.gateway.runs_store import DB_TIMEOUT_S

log = logging.getLogger(__name__)

BATCH_SIZE = 200
POLL_INTERVAL_S = 0.2  # how late a row is published when nobody calls wake()
PROBE_INTERVAL_S = 5.0  # how stale `kafka_reachable` may get while there is nothing to send
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 5.0  # Kafka back → runs flow again within this
_STOP_TIMEOUT_S = 10.0
_MAX_DEFERRED = 100_000

REQUEST_EVENT_TYPE = "run.request"
"""`event-type` header of a run request in the outbox."""
CANCEL_EVENT_TYPE = "run.cancel"
"""`event-type` header of a `CancelRun` in the outbox."""
CANCELLED_WHILE_QUEUED = "not published: the run was cancelled while queued"
"""`last_error` of a request that was withdrawn because its run was cancelled first."""

Headers = Sequence[tuple[str, str]]


def trace_headers() -> list[tuple[str, str]]:
    """W3C trace headers of the current span; a fresh trace id when no trace is active.

    A run's trace starts at its submission (DESIGN §9). Without an OpenTelemetry SDK the
    current span is a no-op that propagates nothing, so the gateway still starts a trace id
    of its own, which the worker's spans then join.
    """
    headers = [(name, value.decode()) for name, value in inject_headers()]
    if not any(name == "traceparent" for name, _ in headers):
        headers.append(("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"))
    return headers


async def enqueue(
    conn: asyncpg.Connection,
    *,
    topic: str,
    key: str | None,
    message: BaseModel,
    event_type: str,
    headers: Headers | None = None,
    held: bool = False,
) -> int:
    """Store `message` for publication on `topic`; call inside the caller's transaction.

    The row becomes visible to the relay when the transaction commits; call
    `OutboxRelay.wake()` after that so it is published at once. A `held` row is not
    published until the dispatcher admits it onto its pool's topic.
    """
    all_headers = [*(headers if headers is not None else trace_headers())]
    all_headers.append(("event-type", event_type))
    row_id: int = await conn.fetchval(
        "INSERT INTO runs.outbox (topic, key, value, headers, held)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        topic,
        key,
        encode(message),
        [list(pair) for pair in all_headers],
        held,
    )
    return row_id


async def withdraw_request(conn: asyncpg.Connection, *, topic: str, key: str) -> None:
    """Keep the unsent request `key` on `topic` from being published (its run was cancelled).

    A row the relay holds right now (a publish under way) is skipped: it is being published.
    """
    await conn.execute(
        "UPDATE runs.outbox SET sent_at = now(), last_error = $3"
        " WHERE id IN (SELECT id FROM runs.outbox WHERE sent_at IS NULL"
        " AND topic = $1 AND key = $2 FOR UPDATE SKIP LOCKED)",
        topic,
        key,
        CANCELLED_WHILE_QUEUED,
        timeout=DB_TIMEOUT_S,
    )


@dataclass(slots=True, frozen=True)
class _Round:
    """What one relay round did."""

    selected: int
    sent: int
    failed: int


class OutboxRelay:
    """Publishes unsent outbox rows to Kafka, in id order, and marks them sent.

    Rows are claimed with `FOR UPDATE SKIP LOCKED`, so every gateway replica runs a relay and
    they share the work. A row whose publication fails keeps `attempts` and `last_error` and
    is retried with exponential backoff; a record handed to the producer but not yet
    acknowledged is awaited again rather than sent twice.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        pool: asyncpg.Pool,
        *,
        batch_size: int = BATCH_SIZE,
        poll_interval_s: float = POLL_INTERVAL_S,
        ack_timeout_s: float | None = None,
    ) -> None:
        self._kafka = kafka
        self._pool = pool
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._ack_timeout_s = ack_timeout_s or min(10.0, kafka.request_timeout_ms / 1000)
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        # Records handed to the producer and not yet resolved, by outbox id.
        self._inflight: dict[int, asyncio.Future[RecordMetadata]] = {}
        # Row id → monotonic time before which it is not retried (after a failure).
        self._retry_at: dict[int, float] = {}
        self._kafka_reachable = False
        self._last_probe = 0.0

    @property
    def kafka_reachable(self) -> bool:
        """Whether the relay's last attempt to talk to Kafka succeeded (for /readyz)."""
        return self._kafka_reachable

    def wake(self) -> None:
        """Publish now: a row was just committed (otherwise the relay polls every 200 ms)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled. Kafka and PostgreSQL errors are retried here, not raised."""
        try:
            await self._probe()
            while True:
                try:
                    result = await self._relay_round()
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    log.warning(
                        "outbox: database unavailable (%s); retrying in %.1fs", exc, _RETRY_MAX_S
                    )
                    await asyncio.sleep(_RETRY_MAX_S)
                    continue
                if result.selected == self._batch_size and result.failed == 0:
                    continue  # a backlog: go on without waiting
                if result.selected == 0 and time.monotonic() - self._last_probe > PROBE_INTERVAL_S:
                    await self._probe()
                await self._pause(self._poll_interval_s)
        finally:
            await self._close_producer()

    # -- one round ----------------------------------------------------------------------------
    async def _relay_round(self) -> _Round:
        now = time.monotonic()
        deferred = [row_id for row_id, at in self._retry_at.items() if at > now]
        async with self._pool.acquire(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers, attempts FROM runs.outbox"
                " WHERE sent_at IS NULL AND NOT held AND NOT (id = ANY($2::bigint[]))"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
                deferred,
                timeout=DB_TIMEOUT_S,
            )
            self._forget_settled({row["id"] for row in rows})
            withdrawn = await self._withdraw_cancelled(conn, rows)
            rows = [row for row in rows if row["id"] not in withdrawn]
            if not rows:
                return _Round(len(withdrawn), 0, 0)
            sent, failed = await self._publish(rows)
            if sent:
                await conn.execute(
                    "UPDATE runs.outbox SET sent_at = now(), attempts = attempts + 1"
                    " WHERE id = ANY($1::bigint[])",
                    sent,
                    timeout=DB_TIMEOUT_S,
                )
            if failed:
                await conn.execute(
                    "UPDATE runs.outbox AS o SET attempts = o.attempts + 1, last_error = f.error"
                    " FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
                    list(failed),
                    list(failed.values()),
                    timeout=DB_TIMEOUT_S,
                )
        self._schedule_retries(rows, failed)
        if failed:
            first = next(iter(failed.values()))
            log.warning(
                "outbox: %d of %d records not published (%s); retrying with backoff",
                len(failed),
                len(rows),
                first,
            )
        return _Round(len(rows), len(sent), len(failed))

    async def _withdraw_cancelled(self, conn: asyncpg.Connection, rows: Sequence[Any]) -> set[int]:
        """Mark requests of runs cancelled while queued as done without publishing them.

        A cancel that found the request unsent already does this; here the relay covers a
        request it skipped then (locked by a publish attempt that failed), so that no worker
        ever starts a run the API shows as cancelled. A record already handed to the producer
        is on its way and not withdrawn.
        """
        candidates: dict[uuid.UUID, int] = {}
        for row in rows:
            if row["id"] in self._inflight or _header(row, "event-type") != REQUEST_EVENT_TYPE:
                continue
            with contextlib.suppress(TypeError, ValueError):
                candidates[uuid.UUID(row["key"])] = row["id"]
        if not candidates:
            return set()
        cancelled = await runs_store.cancelled_before_starting(conn, list(candidates))
        withdrawn = [row_id for run_id, row_id in candidates.items() if run_id in cancelled]
        if withdrawn:
            await conn.execute(
                "UPDATE runs.outbox SET sent_at = now(), last_error = $2"
                " WHERE id = ANY($1::bigint[])",
                withdrawn,
                CANCELLED_WHILE_QUEUED,
                timeout=DB_TIMEOUT_S,
            )
        return set(withdrawn)

    async def _publish(self, rows: Sequence[Any]) -> tuple[list[int], dict[int, str]]:
        """Hand the rows to the producer and wait for their acks, up to the ack timeout."""
        futures: dict[int, asyncio.Future[RecordMetadata]] = {}
        error: str | None = None
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                producer = await self._ensure_producer()
                await self._ensure_topics({row["topic"] for row in rows})
                for row in rows:
                    futures[row["id"]] = await self._send(producer, row)
                await asyncio.wait(futures.values())
        except TimeoutError:
            error = f"no acknowledgement from Kafka within {self._ack_timeout_s:g}s"
        except (KafkaError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        sent: list[int] = []
        failed: dict[int, str] = {}
        for row in rows:
            row_id = row["id"]
            future = futures.get(row_id)
            if future is not None and future.done():
                self._inflight.pop(row_id, None)
                problem = _failure(future)
                if problem is None:
                    sent.append(row_id)
                    continue
                failed[row_id] = problem
            else:  # still in the producer (kept in _inflight), or never handed to it
                failed[row_id] = error or "not sent"
        if sent:
            self._kafka_reachable = True
        elif failed:
            self._kafka_reachable = False
            self._known_topics.clear()  # a broker that was away may have lost them
        return sent, failed

    async def _send(self, producer: AIOKafkaProducer, row: Any) -> asyncio.Future[RecordMetadata]:
        row_id: int = row["id"]
        pending = self._inflight.get(row_id)
        if pending is not None and (not pending.done() or _failure(pending) is None):
            return pending  # handed over in an earlier round: wait for it, do not send twice
        headers = [(str(name), str(value).encode()) for name, value in row["headers"] or ()]
        key: str | None = row["key"]
        with sending_in_trace(headers) as traced:
            future: asyncio.Future[RecordMetadata] = await producer.send(
                row["topic"],
                value=bytes(row["value"]),
                key=key.encode() if key is not None else None,
                headers=traced,
            )
        self._inflight[row_id] = future
        return future

    def _schedule_retries(self, rows: Sequence[Any], failed: dict[int, str]) -> None:
        now = time.monotonic()
        for row in rows:
            if row["id"] in failed:
                delay = min(_RETRY_FIRST_S * 2 ** min(int(row["attempts"]), 16), _RETRY_MAX_S)
                self._retry_at[row["id"]] = now + delay
            else:
                self._retry_at.pop(row["id"], None)
        if len(self._retry_at) > _MAX_DEFERRED:  # only a hint: dropping one retries it sooner
            self._retry_at.clear()

    def _forget_settled(self, selected: set[int]) -> None:
        """Drop bookkeeping of rows another replica published or that were retried."""
        for row_id in [i for i in self._inflight if i not in selected]:
            future = self._inflight[row_id]
            if future.done():
                _failure(future)  # retrieve it, so asyncio does not log it as unhandled
                del self._inflight[row_id]
        now = time.monotonic()
        for row_id in [i for i, at in self._retry_at.items() if at <= now and i not in selected]:
            del self._retry_at[row_id]

    # -- Kafka --------------------------------------------------------------------------------
    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = make_producer(self._kafka, client_id="runmesh-gateway-outbox")
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                await producer.start()
        except BaseException:
            # A producer whose start failed is not restarted; the next round builds a new one.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await producer.stop()
            raise
        self._producer = producer
        return producer

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if missing:
            await ensure_topics(self._kafka, missing)
            self._known_topics |= missing

    async def _probe(self) -> None:
        """Refresh `kafka_reachable` with a metadata request while there is nothing to send."""
        self._last_probe = time.monotonic()
        try:
            producer = await self._ensure_producer()
            async with asyncio.timeout(5.0):
                await producer.client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            if self._kafka_reachable:
                log.warning("outbox: Kafka unreachable: %s", exc)
            self._kafka_reachable = False
        else:
            self._kafka_reachable = True

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            # stop() flushes what is pending; with Kafka away that could wait for ever, and
            # what it could not flush is still in the table, unsent.
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await producer.stop()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("outbox: producer did not stop cleanly: %s", exc)

    async def _pause(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        self._wake.clear()


def _header(row: Any, name: str) -> str | None:
    for pair in row["headers"] or ():
        if len(pair) == 2 and pair[0] == name:
            return str(pair[1])
    return None


def _failure(future: asyncio.Future[RecordMetadata]) -> str | None:
    """Why a finished delivery failed, or None when it was acknowledged."""
    if future.cancelled():
        return "send was cancelled"
    exc = future.exception()
    return None if exc is None else f"{type(exc).__name__}: {exc}"
