"""The service loop every category service runs (DESIGN §4, §6): consume, run, report, commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from runmesh.core.db.pool import create_pool
from runmesh.core.errors import DecodeError
from runmesh.core.events import (
    CancelRun,
    RunRequest,
    decode,
    decode_event,
)
from runmesh.core.kafka import (
    Publisher,
    TrackedConsumer,
    ensure_topics,
    make_consumer,
    make_producer,
    replay_from_start,
)
from runmesh.core.kafka.tracked_consumer import Record
from runmesh.core.logs import bind_run
from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.reaching import reaching, without_password
from runmesh.core.settings import Settings
from runmesh.core.telemetry import extract_context, inject_headers
from runmesh.core.topics import Topics
from runmesh.execution import (
    Cancelled,
    Failed,
    Outcome,
    StopSignal,
    Succeeded,
    warm_job_server,
)
from runmesh.execution.isolation import run_method
from runmesh.execution.memory_limit import open_job_cgroups
from runmesh.execution.watchdog import LoopWatchdog
from runmesh.plugins.registry import PluginRegistry
from runmesh.worker.attempts import AttemptRunner
from runmesh.worker.dead_letters import DeadLetters
from runmesh.worker.emitter import RunEmitter
from runmesh.worker.ledger import AttemptLedger, Claim
from runmesh.worker.metrics import WorkerMetrics
from runmesh.worker.presence import PresenceBeacon
from runmesh.worker.published_plugins import PublishedPlugins
from runmesh.worker.resource_gate import ResourceGate, lacking, worker_capacity
from runmesh.worker.retries import Retries
from runmesh.worker.tenant_code import TenantCodeGuard

log = logging.getLogger(__name__)
READY_MARKER = "serving"  # logged once the worker consumes; process supervisors wait for it
# Cancels of runs not (yet) seen here, remembered for a late request: the control topic's
# retained ones are replayed at start. Their reasons are cut short to bound the memory.
_RECENT_CANCELS = 100_000
_CANCEL_REASON_CHARS = 300
_FETCH_TIMEOUT_MS = 200
_STATES = {Succeeded: "succeeded", Failed: "failed", Cancelled: "cancelled"}


class Worker:
    """Consumes `runmesh.requests.<category>` (another pool's: `...<category>.pool.<pool>`)
    and runs each request's plugin action.

    A service only builds a `PluginRegistry` and calls `run()`; Kafka, attempts, commits,
    cancellation, timeouts, shutdown, telemetry and metrics all live here.
    """

    def __init__(
        self,
        category: str,
        registry: PluginRegistry,
        settings: Settings,
        *,
        service: str | None = None,
        worker_id: str | None = None,
        tracer_provider: TracerProvider | None = None,
        metrics: WorkerMetrics | None = None,
        watchdog: LoopWatchdog | None = None,
    ) -> None:
        self.category = category
        self.registry = registry
        self.settings = settings
        self.service = service or category
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.topics = Topics(settings.topic_prefix)
        self.requests_topic = self.topics.requests(category, settings.worker_pool)
        # Workers of several categories in one process share these: one /metrics, one loop.
        self.metrics = metrics or WorkerMetrics()
        # None: the global provider, even one installed after this (setup_tracing in serve).
        self._tracer = trace.get_tracer("runmesh.worker", tracer_provider=tracer_provider)
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: dict[uuid.UUID, StopSignal] = {}
        self._recent_cancels: OrderedDict[uuid.UUID, str] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        # Set in run(); typed here so the loop methods need no checks.
        self._publisher: Publisher
        self._consumer: TrackedConsumer
        self._control: AIOKafkaConsumer
        self._ledger: AttemptLedger
        self._dead_letters: DeadLetters
        self._gate: ResourceGate
        self._published = PublishedPlugins(settings.kafka)
        self.watchdog = watchdog or LoopWatchdog(limit_s=settings.loop_block_limit_s)
        """Watches the event loop while `run()` serves; its heartbeat feeds `/healthz`."""
        self._attempts = AttemptRunner(
            category, registry, self._published, settings, self.metrics, self.watchdog
        )
        self._retries = Retries(
            category, registry, settings.worker, self.metrics, self._running, self._stopping
        )

    @property
    def group_id(self) -> str:
        """The consumer group shared by every replica of this category's service in its pool."""
        pool = self.settings.worker_pool
        suffix = "" if pool == DEFAULT_POOL else f"-pool-{pool}"
        return f"{self.settings.topic_prefix}-{self.category}{suffix}"

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until `request_stop()`; in-flight runs get `shutdown_grace_s` to finish."""
        settings = self.settings
        trusted = settings.in_process_plugins
        job_classes = [
            action.cls
            for plugin in self.registry.plugins(self.category)
            for action in plugin.actions.values()
            if run_method(plugin, action, trusted) == "job"
        ]
        if job_classes:
            await asyncio.to_thread(warm_job_server, job_classes)
        async with contextlib.AsyncExitStack() as stack:
            self.watchdog.start()
            stack.callback(self.watchdog.stop)
            cgroups = await asyncio.to_thread(open_job_cgroups, settings.job_memory_limit)
            if cgroups is not None:
                self._attempts.job_cgroups = cgroups
                stack.callback(cgroups.close)
            async with reaching(f"PostgreSQL at {without_password(settings.database_url)}"):
                pool = await create_pool(settings.database, min_size=1, max_size=4)
                stack.push_async_callback(pool.close)
                self._ledger = AttemptLedger(pool)
                await self._ledger.migrate()
                self._attempts.tenant_code = TenantCodeGuard(pool, settings)
            async with reaching(f"Kafka at {settings.kafka_bootstrap}"):
                await self._start_kafka(stack)
            join_timeout_s = 2 * settings.kafka_session_timeout_ms / 1000
            if not await self._consumer.wait_for_assignment(join_timeout_s):
                log.warning("no partitions assigned after %.0fs; serving anyway", join_timeout_s)
            await self._publish_manifests()
            log.info("worker %s %s %s", self.worker_id, READY_MARKER, self.requests_topic)
            self.ready.set()
            beacon = PresenceBeacon(
                self._publisher,
                self.topics.workers,
                worker=self.worker_id,
                service=self.service,
                category=self.category,
                settings=settings.worker,
                busy=self._busy_slots,
            )
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self._control_loop()),
                    group.create_task(self._commit_loop()),
                    group.create_task(self._published.run()),
                    group.create_task(beacon.run()),
                ]
                await self._fetch_loop(group)
                background.pop().cancel()
                await beacon.announce("stopping")
                await self._drain()
                for task in background:
                    task.cancel()
            await beacon.announce("stopped")
            log.info("worker %s stopped", self.worker_id)

    # -- start-up -----------------------------------------------------------------------------
    async def _start_kafka(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        category_topics = [self.requests_topic, self.topics.dlq(self.category)]
        shared = [self.topics.events, self.topics.control, self.topics.plugins, self.topics.workers]
        await ensure_topics(settings.kafka, [*category_topics, *shared])
        producer = make_producer(settings.kafka, client_id=f"{self.service}-producer")
        await producer.start()
        stack.push_async_callback(producer.stop)
        self._publisher = Publisher(producer, max_message_bytes=settings.max_message_bytes)
        self._dead_letters = DeadLetters(
            self._publisher, self.topics.dlq(self.category), self.category, self.metrics
        )
        self._control = await self._start_control(stack)
        await self._published.start()
        stack.push_async_callback(self._published.stop)
        self._consumer = TrackedConsumer(
            make_consumer(
                settings.kafka, group_id=self.group_id, client_id=f"{self.service}-{self.worker_id}"
            ),
            self.requests_topic,
            capacity=settings.max_concurrent_runs,
        )
        await self._consumer.start()
        stack.push_async_callback(self._consumer.stop)
        self._gate = ResourceGate(worker_capacity(settings.worker), on_hold=self._consumer.hold)

    async def _start_control(self, stack: contextlib.AsyncExitStack) -> AIOKafkaConsumer:
        """Every worker reads every cancel (no group). The retained ones are read before any
        request: a run cancelled while queued, before this worker started or while it was
        down, must end `cancelled` here, never run."""
        control = make_consumer(
            self.settings.kafka,
            self.topics.control,
            group_id=None,
            client_id=f"{self.service}-control",
        )
        await control.start()
        stack.push_async_callback(control.stop)
        replayed = await replay_from_start(
            control, self._on_cancel, timeout_s=self.settings.kafka_request_timeout_ms / 1000
        )
        log.info("worker %s: %d retained cancels read", self.worker_id, replayed)
        return control

    async def _publish_manifests(self) -> None:
        acks = []
        for plugin in self.registry.plugins(self.category):
            manifest = plugin.manifest(service=self.service, worker=self.worker_id)
            acks.append(
                await self._publisher.send(
                    self.topics.plugins, manifest, key=plugin.ref, event_type="plugin.manifest"
                )
            )
        await asyncio.gather(*acks)

    # -- loops --------------------------------------------------------------------------------
    async def _fetch_loop(self, group: asyncio.TaskGroup) -> None:
        while not self._stopping.is_set():
            records = await self._consumer.fetch(timeout_ms=_FETCH_TIMEOUT_MS)
            if records:
                await self._dispatch(records, group)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            await self._consumer.commit()

    async def _control_loop(self) -> None:
        while True:
            batches = await self._control.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._on_cancel(record)

    def _on_cancel(self, record: Record) -> None:
        try:
            cancel = decode(record.value or b"", CancelRun)
        except DecodeError as exc:
            log.warning("ignoring an undecodable control record: %s", exc)
            return
        stop = self._running.get(cancel.run_id)
        if stop is not None:
            log.info("run %s: cancel requested (%s)", cancel.run_id, cancel.reason)
            stop.request("cancel", cancel.reason)
            return
        self._recent_cancels[cancel.run_id] = cancel.reason[:_CANCEL_REASON_CHARS]
        while len(self._recent_cancels) > _RECENT_CANCELS:
            self._recent_cancels.popitem(last=False)

    # -- dispatch -----------------------------------------------------------------------------
    async def _dispatch(self, records: Sequence[Record], group: asyncio.TaskGroup) -> None:
        accepted: list[tuple[Record, RunRequest]] = []
        batch_ids: set[uuid.UUID] = set()
        for record in records:
            try:
                request = decode(record.value or b"", RunRequest)
            except DecodeError as exc:
                self._spawn(group, self._dead_letter(record, "undecodable", str(exc)))
                continue
            if request.run_id in self._running or request.run_id in batch_ids:
                # Delivered again while this worker still runs it (a rebalance handed the
                # partition back): the running attempt owns it.
                log.info("run %s: duplicate delivery while running; skipped", request.run_id)
                self._consumer.finish(record)
                continue
            batch_ids.add(request.run_id)
            accepted.append((record, request))
        if not accepted:
            return
        claims = await self._claim([req.run_id for _, req in accepted])
        if claims is None:  # stopping while the database is unreachable: redeliver them
            for record, _ in accepted:
                self._consumer.abandon(record)
            return
        for record, request in accepted:
            # Registered before the task starts so a cancel arriving meanwhile finds it.
            self._running[request.run_id] = StopSignal()
            self._spawn(group, self._process(record, request, claims[request.run_id]))

    async def _claim(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, Claim] | None:
        """Claim attempts, waiting while PostgreSQL is away; None when the worker stops."""
        return await self._ledger.claim_when_reachable(run_ids, self.category, self._stopping)

    def _spawn(self, group: asyncio.TaskGroup, coro: Coroutine[Any, Any, None]) -> None:
        task = group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(self, record: Record, reason: str, detail: str) -> None:
        """Copy a record to the category's DLQ with why, then let its offset be committed."""
        try:
            await self._dead_letters.copy(record, reason, detail, source=True)
        except Exception:  # the record stays uncommitted and is retried after a restart
            log.exception("could not dead-letter %s:%s", record.partition, record.offset)
            self._consumer.abandon(record)
            return
        log.warning(
            "dead-lettered %s[%s]@%s: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail,
        )
        self._consumer.finish(record)

    async def _process(self, record: Record, request: RunRequest, claim: Claim) -> None:
        """Run one delivered request to its terminal event; never raises into the group."""
        bind_run(request.run_id, tenant=request.tenant, attempt=claim.attempt)  # this task's logs
        finished = False
        try:
            finished = await self._run_request(record, request, claim)
        except Exception:  # an infrastructure failure: leave the request for redelivery
            log.exception("run %s: could not be completed; left for redelivery", request.run_id)
        finally:
            self._running.pop(request.run_id, None)
            if finished:
                self._consumer.finish(record)
            else:
                self._consumer.abandon(record)

    async def _run_request(self, record: Record, request: RunRequest, claim: Claim) -> bool:
        while not claim.ended:
            ended = await self._run_attempt(record, request, claim)
            if not isinstance(ended, Claim):
                return ended
            claim = ended  # a retryable failure's next attempt, claimed after its backoff
        # The run ended in an earlier delivery; re-publish its end so no reader misses it.
        if claim.terminal_event is not None:
            await self._republish(request, claim.terminal_event)
        log.info("run %s already %s; not run again", request.run_id, claim.state)
        return True

    async def _run_attempt(self, record: Record, request: RunRequest, claim: Claim) -> bool | Claim:
        """One attempt to its end: True = the run ended, False = abandoned, a Claim = retried."""
        with self._tracer.start_as_current_span(
            f"run {self.category}.{request.action}",
            context=extract_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "runmesh.run_id": str(request.run_id),
                "runmesh.attempt": claim.attempt,
                "runmesh.category": self.category,
                "runmesh.action": request.action,
            },
        ) as span:
            emitter = RunEmitter(
                self._publisher,
                topic=self.topics.events,
                run_id=request.run_id,
                attempt=claim.attempt,
                service=self.service,
                worker=self.worker_id,
                category=self.category,
                tenant=request.tenant,
                headers=inject_headers(),
                metrics=self.metrics,
            )
            began = time.monotonic()
            outcome = await self._attempt(record, request, claim, emitter)
            if isinstance(outcome, Failed):
                after = await self._retries.after(outcome, request, claim, emitter, self._claim)
                if isinstance(after, Claim):
                    span.set_attribute("runmesh.state", "retrying")
                    return after
                outcome = after
            if outcome is None:
                await emitter.abort()
                return False
            terminal = await emitter.finish(outcome)
            # The action is over: its slot may take the next request while the ledger write,
            # which only gates the offset commit, completes.
            self._consumer.release(record)
            state = _STATES[type(outcome)]
            await self._ledger.finish(request.run_id, state, terminal)
            self.metrics.child(self.metrics.runs_finished, self.category, state).inc()
            self.metrics.child(self.metrics.run_duration, self.category).observe(
                time.monotonic() - began
            )
            span.set_attribute("runmesh.state", state)
            if isinstance(outcome, Failed):
                span.set_status(
                    Status(StatusCode.ERROR, f"{outcome.error_type}: {outcome.message}")
                )
        return True

    async def _republish(self, request: RunRequest, terminal: bytes) -> None:
        event_type = decode_type(terminal)
        ack = await self._publisher.send_raw(
            self.topics.events,
            terminal,
            key=str(request.run_id),
            headers=[*inject_headers(), ("event-type", event_type.encode())],
        )
        await ack

    async def _attempt(
        self, record: Record, request: RunRequest, claim: Claim, emitter: RunEmitter
    ) -> Outcome | None:
        """Everything between delivery and the attempt's end; None = abandon (shutdown)."""
        policy = self._retries.policy(request)
        limit = policy.max_attempts
        if claim.attempt > limit:
            detail = f"run was started {limit} times"
            await self._dead_letters.copy(record, "max-attempts", detail, source=False)
            return Failed(
                "MaxAttemptsExceeded",
                f"run was started {limit} times without finishing ({policy.limit_source}); "
                "not retried again, the request was copied to the dead-letter topic",
            )
        if request.category != self.category:
            return Failed(
                "WrongCategory",
                f"request for category {request.category!r} arrived on the {self.category!r} topic",
            )
        cancelled = self._recent_cancels.pop(request.run_id, None)
        if cancelled is not None:
            return Cancelled(cancelled)
        stop = self._running.get(request.run_id)
        if stop is not None and stop.requested:  # cancelled while waiting for its slot
            return stop.outcome()
        stop = self._running.setdefault(request.run_id, StopSignal())
        if (short := lacking(request.resources, self._gate.capacity)) is not None:
            return Failed("InsufficientResources", f"{short}: it cannot run here")
        async with self._gate.turn(request.resources, stop) as gpus:
            if gpus is None:  # stopped while it waited its turn: the worker's stop abandons it
                return None if stop.kind == "shutdown" else stop.outcome()
            return await self._attempts.run(request, claim.attempt, emitter, stop, gpus)

    def _busy_slots(self) -> int:
        """Slots holding a run, as announced: all of them while a run waits for room or runs
        alone (the worker takes nothing more meanwhile)."""
        return self.settings.max_concurrent_runs if self._gate.held else len(self._running)

    # -- shutdown -----------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Let in-flight runs finish within the grace period; abandon the rest."""
        if not self._tasks:
            return
        log.info(
            "waiting up to %.0fs for %d runs", self.settings.shutdown_grace_s, len(self._tasks)
        )
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_grace_s)
        if not pending:
            return
        log.warning("%d runs did not finish in the grace period; left for redelivery", len(pending))
        for stop in self._running.values():
            stop.request("shutdown", "the worker is shutting down")
        await asyncio.wait(pending, timeout=self.settings.cancel_grace_s + 5)


def decode_type(event: bytes) -> str:
    """The `type` of an encoded run event (for the `event-type` header of a replay)."""
    return decode_event(event).type
