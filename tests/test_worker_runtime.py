"""The worker runtime against a real broker and Postgres: lifecycle, failures, cancel, kills."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from runmesh.core.db import create_pool
from runmesh.core.events import (
    RunFailed,
    RunProgress,
    RunRequest,
    RunStarted,
    RunSucceeded,
    decode,
)
from runmesh.core.kafka import consumer_config
from runmesh.core.settings import Settings
from runmesh.core.telemetry import header_value
from runmesh.core.testing import eventually

from .conftest import RunClient, WorkerFactory


def _seqs_gapless(client: RunClient, run_id: uuid.UUID) -> None:
    by_attempt: dict[int, list[int]] = {}
    for event in client.events[run_id]:
        by_attempt.setdefault(event.attempt, []).append(event.seq)
    for attempt, seqs in by_attempt.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"attempt {attempt}: seqs {seqs}"


async def test_request_runs_to_success_with_ordered_gapless_events(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("echo", {"name": "ada", "count": 500, "token": "s3cret"})
        terminal = await client.wait_terminal(request.run_id)
    assert isinstance(terminal, RunSucceeded)
    assert terminal.payload.result == {"name": "ada", "count": 500}
    events = client.events[request.run_id]
    _seqs_gapless(client, request.run_id)
    assert events[0].type == "run.started"
    assert isinstance(events[0], RunStarted)
    assert events[0].payload.params["token"] == "**********"  # secrets never reach the topic
    assert "s3cret" not in str([e.model_dump() for e in events])
    types = [e.type for e in events]
    assert types[-1] == "run.succeeded"
    assert {"run.log", "run.metric", "run.artifact", "run.progress"} <= set(types)
    progress = [e for e in events if isinstance(e, RunProgress)]
    # 500 set_progress calls are coalesced, and the last value always arrives.
    assert len(progress) < 50
    assert (progress[-1].payload.current, progress[-1].payload.total) == (500, 500)
    coded = [e for e in events if e.type == "run.log" and e.payload.code == "ECHO_DONE"]  # type: ignore[attr-defined]
    assert coded and coded[0].payload.message == "echoed 500 times"  # type: ignore[attr-defined]


async def test_invalid_params_fail_listing_field_errors(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("echo", {"count": 0})
        terminal = await client.wait_terminal(request.run_id)
    assert isinstance(terminal, RunFailed)
    assert terminal.payload.error_type == "ValidationError"
    assert "name: Field required" in terminal.payload.message
    assert "count: Input should be greater than 0" in terminal.payload.message
    assert not any(e.type == "run.started" for e in client.events[request.run_id])
    _seqs_gapless(client, request.run_id)


async def test_unknown_action_fails_naming_the_known_ones(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("teleport")
        unknown_plugin = RunRequest(category="test", action="noop", plugin="nope@1.0")
        await client.send(unknown_plugin)
        terminal = await client.wait_terminal(request.run_id)
        other = await client.wait_terminal(unknown_plugin.run_id)
    assert isinstance(terminal, RunFailed) and isinstance(other, RunFailed)
    assert terminal.payload.error_type == "UnknownAction"
    assert "teleport" in terminal.payload.message and "echo" in terminal.payload.message
    assert "unknown plugin 'nope'" in other.payload.message
    assert "testkit@1.0.0" in other.payload.message


async def test_garbage_goes_to_the_dlq_and_the_worker_keeps_consuming(
    client: RunClient, worker: WorkerFactory, settings: Settings
) -> None:
    dlq = AIOKafkaConsumer(
        client.topics.dlq("test"),
        **consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"},
    )
    await dlq.start()
    try:
        async with worker():
            await client.send_raw(b"\x00not json", key=b"k1")
            await client.send_raw(b'{"action": "noop"}', key=b"k2")  # valid JSON, not a request
            request = await client.submit("noop")
            terminal = await client.wait_terminal(request.run_id)
            assert isinstance(terminal, RunSucceeded)
            records = []

            async def two_records() -> bool:
                batches = await dlq.getmany(timeout_ms=200)
                records.extend(r for batch in batches.values() for r in batch)
                return len(records) >= 2

            await eventually(two_records, timeout=10, message="no DLQ records")
    finally:
        await dlq.stop()
    assert sorted(r.value for r in records) == sorted([b"\x00not json", b'{"action": "noop"}'])
    for record in records:
        assert header_value(record.headers, "reason") == "undecodable"
        assert "RunRequest" in (header_value(record.headers, "reason-detail") or "")
        assert header_value(record.headers, "source-topic") == client.topics.requests("test")


@pytest.mark.parametrize("action", ["sleep", "async_sleep", "sleep_job", "stubborn"])
async def test_cancel_while_running_ends_cancelled_within_2s(
    client: RunClient, worker: WorkerFactory, action: str
) -> None:
    async with worker():
        request = await client.submit(action, {"seconds": 30, "steps": 300})
        await client.wait_event(request.run_id, "run.started")
        if action in ("sleep_job", "stubborn"):
            await asyncio.sleep(0.5)  # let the child get into the action
        began = time.monotonic()
        await client.cancel(request.run_id)
        terminal = await client.wait_terminal(request.run_id, timeout=10)
        elapsed = time.monotonic() - began
    assert terminal.type == "run.cancelled"
    assert elapsed < 2.0, f"cancel took {elapsed:.2f}s"
    _seqs_gapless(client, request.run_id)


async def test_a_run_cancelled_while_queued_before_any_worker_is_never_started(
    client: RunClient, worker: WorkerFactory
) -> None:
    queued = await client.submit("noop")
    await client.cancel(queued.run_id)

    async with worker():
        terminal = await client.wait_terminal(queued.run_id)
        later = await client.submit("noop")  # the worker executes what was not cancelled
        assert (await client.wait_terminal(later.run_id)).type == "run.succeeded"

    assert terminal.type == "run.cancelled"
    assert "run.started" not in [event.type for event in client.events[queued.run_id]]


async def test_timeout_fails_the_run_with_error_type_timeout(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        task = await client.submit("sleep", {"seconds": 30, "steps": 300}, timeout_s=0.5)
        job = await client.submit("sleep_job", {"seconds": 30, "steps": 300}, timeout_s=1.5)
        task_end = await client.wait_terminal(task.run_id)
        job_end = await client.wait_terminal(job.run_id)
    for terminal in (task_end, job_end):
        assert isinstance(terminal, RunFailed)
        assert terminal.payload.error_type == "Timeout"
        assert "timeout" in terminal.payload.message


async def test_an_actions_default_timeout_applies_unless_the_request_sets_its_own(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        limited = await client.submit("sleep_limited", {"seconds": 30, "steps": 300})
        own = await client.submit("sleep_limited", {"seconds": 1, "steps": 4}, timeout_s=60)
        limited_end = await client.wait_terminal(limited.run_id)
        own_end = await client.wait_terminal(own.run_id)
    assert isinstance(limited_end, RunFailed) and limited_end.payload.error_type == "Timeout"
    assert "0.5s" in limited_end.payload.message
    assert own_end.type == "run.succeeded"  # its own 60 s won over the action's 0.5 s


async def test_crashing_and_memory_hungry_jobs_fail_and_the_worker_goes_on(
    client: RunClient, worker: WorkerFactory
) -> None:
    # RLIMIT_DATA: the same on every host (a cgroup, where there is one, is test_job_memory's)
    async with worker(job_memory_mb=512, job_memory_limit="rlimit"):
        crash = await client.submit("crash")
        hog = await client.submit("hog", {"mb": 2048})
        crash_end = await client.wait_terminal(crash.run_id, timeout=30)
        hog_end = await client.wait_terminal(hog.run_id, timeout=30)
        after = await client.submit("sleep_job", {"seconds": 0.1, "steps": 2})
        after_end = await client.wait_terminal(after.run_id, timeout=30)
    assert isinstance(crash_end, RunFailed) and crash_end.payload.error_type == "JobCrashed"
    assert "exited with code 1" in crash_end.payload.message
    assert isinstance(hog_end, RunFailed)
    assert hog_end.payload.error_type == "OutOfMemory"
    assert hog_end.payload.message.startswith("out of memory (limit 512 MB)")
    assert isinstance(after_end, RunSucceeded)


async def test_a_job_whose_result_is_not_json_fails_with_a_clear_error(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("odd_result")
        terminal = await client.wait_terminal(request.run_id, timeout=30)
    assert isinstance(terminal, RunFailed)
    assert terminal.payload.error_type == "InvalidResult"
    assert "cannot be sent" in terminal.payload.message


async def test_failing_action_reports_type_message_and_traceback(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("fail", {"message": "disk on fire"})
        terminal = await client.wait_terminal(request.run_id)
    assert isinstance(terminal, RunFailed)
    assert terminal.payload.error_type == "ValueError"
    assert terminal.payload.message == "disk on fire"
    assert "actions.py" in (terminal.payload.traceback or "")


async def test_runs_past_max_attempts_fail_and_go_to_the_dlq(
    client: RunClient, worker: WorkerFactory, settings: Settings
) -> None:
    request = RunRequest(category="test", action="noop")
    async with worker(max_attempts=2) as running:
        pool = await create_pool(settings.database)
        try:
            # Two earlier deliveries started the run and their worker died each time.
            await pool.execute(
                "INSERT INTO worker.run_attempts (run_id, category, attempts)"
                " VALUES ($1, 'test', 2)",
                request.run_id,
            )
        finally:
            await pool.close()
        await client.send(request)
        terminal = await client.wait_terminal(request.run_id)
        assert running.metrics.dlq_records.labels("other", "max-attempts")._value.get() == 1
    assert isinstance(terminal, RunFailed)
    assert terminal.payload.error_type == "MaxAttemptsExceeded"
    assert terminal.attempt == 3


@pytest.mark.parametrize(
    ("request_limit", "action", "expected", "named"),
    [
        (1, "noop", 1, "the request's max_attempts"),  # the request's own
        (None, "noop_once", 1, "the action's max_attempts"),  # the action's default
        (5, "noop", 3, "RUNMESH_MAX_ATTEMPTS"),  # capped by the worker's setting
    ],
)
async def test_a_runs_own_or_its_actions_max_attempts_applies_within_the_platforms(
    client: RunClient,
    worker: WorkerFactory,
    settings: Settings,
    request_limit: int | None,
    action: str,
    expected: int,
    named: str,
) -> None:
    request = RunRequest(category="test", action=action, max_attempts=request_limit)
    async with worker(max_attempts=3):
        pool = await create_pool(settings.database)
        try:
            # Earlier deliveries started the run `expected` times; each worker died.
            await pool.execute(
                "INSERT INTO worker.run_attempts (run_id, category, attempts)"
                " VALUES ($1, 'test', $2)",
                request.run_id,
                expected,
            )
        finally:
            await pool.close()
        await client.send(request)
        terminal = await client.wait_terminal(request.run_id)
    assert isinstance(terminal, RunFailed)
    assert terminal.payload.error_type == "MaxAttemptsExceeded"
    assert f"started {expected} times without finishing ({named})" in terminal.payload.message


async def test_a_request_delivered_again_after_success_is_not_run_again(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("noop")
        first = await client.wait_terminal(request.run_id)
        await client.send(request)  # the same run_id again (a producer retry, a replay)
        await eventually(lambda: len(client.terminal(request.run_id)) == 2, timeout=10)
    again = client.terminal(request.run_id)[1]
    # The stored terminal event is re-published as is: readers dedup it by event_id.
    assert again.event_id == first.event_id
    assert [e.type for e in client.events[request.run_id]].count("run.started") == 1


@pytest.mark.parametrize("action", ["context", "context_job"])
async def test_an_action_sees_its_tenant_category_and_settings(
    client: RunClient, worker: WorkerFactory, settings: Settings, action: str
) -> None:
    async with worker():
        request = await client.submit(action, tenant="acme")
        terminal = await client.wait_terminal(request.run_id)
    assert terminal.type == "run.succeeded", terminal
    assert terminal.payload.result == {  # type: ignore[attr-defined]
        "tenant": "acme",
        "category": "test",
        "database_url": settings.database_url,
    }


async def test_trace_context_flows_from_request_to_events(
    client: RunClient, worker: WorkerFactory
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{'ab' * 8}-01"
    async with worker():
        request = RunRequest(category="test", action="noop")
        await client.send(request, headers=[("traceparent", traceparent.encode())])
        await client.wait_terminal(request.run_id)
    for headers in client.headers[request.run_id]:
        assert trace_id in (header_value(headers, "traceparent") or "")
        assert header_value(headers, "event-type") is not None


async def test_worker_publishes_manifests_and_counts_metrics(
    client: RunClient, worker: WorkerFactory, settings: Settings
) -> None:
    async with worker() as running:
        request = await client.submit("noop")
        await client.wait_terminal(request.run_id)
        finished = running.metrics.runs_finished.labels("other", "succeeded")
        await eventually(lambda: finished._value.get() == 1, timeout=5)
    plugins = AIOKafkaConsumer(
        client.topics.plugins,
        **consumer_config(settings.kafka, group_id=None) | {"auto_offset_reset": "earliest"},
    )
    await plugins.start()
    try:
        batches = await plugins.getmany(timeout_ms=5000)
    finally:
        await plugins.stop()
    from runmesh.core.events import PluginManifest

    manifests = [decode(r.value or b"", PluginManifest) for b in batches.values() for r in b]
    assert manifests and manifests[0].code == "testkit"
    echo = manifests[0].actions["echo"]
    assert echo.params_schema["required"] == ["name", "count"]
    assert echo.progress_categories["echo"]["proportion"] == 100


async def test_sigterm_lets_the_running_run_finish_before_exit(
    client: RunClient, worker_process
) -> None:
    process = worker_process()
    await process.wait_ready()
    request = await client.submit("sleep", {"seconds": 2, "steps": 20})
    await client.wait_event(request.run_id, "run.started")
    process.signal(signal.SIGTERM)
    code = await process.wait_exit(timeout=30)
    assert code == 0, process.log_text()
    terminal = client.terminal(request.run_id) or [await client.wait_terminal(request.run_id, 5)]
    assert isinstance(terminal[-1], RunSucceeded)


@pytest.mark.slow
async def test_sigkilled_worker_run_is_redone_by_another_replica_as_attempt_2(
    client: RunClient, worker_process
) -> None:
    first, second = worker_process(), worker_process()
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    request = await client.submit("sleep", {"seconds": 3, "steps": 30})
    started = await client.wait_event(request.run_id, "run.started")
    victim = first if f":{first.pid}:" in started.worker else second
    survivor = second if victim is first else first
    victim.signal(signal.SIGKILL)
    terminal = await client.wait_terminal(request.run_id, timeout=60)
    assert isinstance(terminal, RunSucceeded), survivor.log_text()
    assert terminal.attempt == 2
    assert f":{survivor.pid}:" in terminal.worker
    # After success the request is never run again, even when it is redelivered.
    await asyncio.sleep(2)
    assert len(client.terminal(request.run_id)) == 1
    starts = [e for e in client.events[request.run_id] if e.type == "run.started"]
    assert [e.attempt for e in starts] == [1, 2]
    _seqs_gapless(client, request.run_id)


@pytest.mark.slow
async def test_two_replicas_share_partitions_and_finish_200_runs(
    client: RunClient, worker: WorkerFactory
) -> None:
    async with worker() as one, worker() as two:
        await eventually(
            lambda: one._consumer.consumer.assignment() and two._consumer.consumer.assignment(),
            timeout=30,
            message="both replicas should own partitions",
        )
        requests = [
            RunRequest(category="test", action="sleep", params={"seconds": 0.02, "steps": 1})
            for _ in range(200)
        ]
        await asyncio.gather(*(client.send(r) for r in requests))
        for request in requests:
            await client.wait_terminal(request.run_id, timeout=120)
    workers = set()
    for request in requests:
        terminal = client.terminal(request.run_id)
        assert len(terminal) == 1 and isinstance(terminal[0], RunSucceeded)
        workers.add(terminal[0].worker)
    assert workers == {one.worker_id, two.worker_id}
