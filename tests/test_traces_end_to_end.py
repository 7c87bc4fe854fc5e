"""One trace per run without hand-written spans (issue 22 item 2): with the OTLP endpoint set,
a request to the gateway, its SQL, its Kafka publish and the worker's run are one trace in the
collector, and the run's JSON log lines carry that trace's id."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from runmesh.core.db import create_pool
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway.tokens import create_token
from runmesh.sandbox.processes import free_port

from .conftest import CATEGORY, WorkerProcess, own_database, service_env, until_plugin_known
from .otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver

TRACE_ID = uuid.uuid4().hex
CLIENT_SPAN_ID = "00f067aa0ba902b7"
SERVER, PRODUCER, CONSUMER, CLIENT = 2, 4, 5, 3  # OTLP's SpanKind numbers
Stoppable = subprocess.Popen[bytes] | WorkerProcess


def gateway_process(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m runmesh.gateway` on the test's servers, logging to `log_path`."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runmesh.gateway"],
            env=service_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def stopped_at_end() -> Iterator[list[Stoppable]]:
    processes: list[Stoppable] = []
    yield processes
    for process in processes:
        if isinstance(process, WorkerProcess):
            process.close()
        elif process.poll() is None:
            process.kill()
            process.wait()


def in_trace(receiver: OtlpReceiver) -> list[ReceivedSpan]:
    return [s for s in receiver.spans() if s.span.trace_id.hex() == TRACE_ID]


def parent_of(span: ReceivedSpan, spans: list[ReceivedSpan]) -> ReceivedSpan:
    [parent] = [s for s in spans if s.span.span_id == span.span.parent_span_id]
    return parent


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_run_submitted_over_rest_is_one_trace_from_gateway_to_worker(
    settings: Settings,
    tmp_path: Path,
    stopped_at_end: list[Stoppable],
) -> None:
    async with own_database(settings) as own, otlp_receiver() as receiver:
        traced = own.model_copy(
            update={
                "otel_exporter_otlp_endpoint": receiver.endpoint,
                "log_format": "json",
                "gateway_port": free_port(),
            }
        )
        stopped_at_end.append(gateway_process(traced, tmp_path / "gateway.log"))
        worker = WorkerProcess(traced, tmp_path / "worker.log")
        stopped_at_end.append(worker)
        url = f"http://127.0.0.1:{traced.gateway_port}"

        async def gateway_up() -> bool:
            async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
                try:
                    return (await probe.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False  # not listening yet

        await eventually(gateway_up, timeout=120, message="the gateway did not start")
        pool = await create_pool(traced.database, min_size=1, max_size=1)
        try:
            token = await create_token(pool, "acme")
        finally:
            await pool.close()
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            await until_plugin_known(api)
            answer = await api.post(
                "/v1/runs",
                json={"category": CATEGORY, "action": "log_line", "params": {"message": "found"}},
                headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"},
            )
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["id"]

            async def ended() -> str | None:
                state = (await api.get(f"/v1/runs/{run_id}")).json()["state"]
                return state if state in {"succeeded", "failed", "cancelled"} else None

            assert await eventually(ended, timeout=120, message="the run did not end") == (
                "succeeded"
            )

        def whole_trace() -> list[ReceivedSpan]:
            spans = in_trace(receiver)
            assert any(s.span.name == f"run {CATEGORY}.log_line" for s in spans)
            assert any(s.span.kind == SERVER for s in spans)
            return spans

        # Each process exports in batches, a few seconds apart.
        spans = await eventually(whole_trace, timeout=120, message="the trace never came whole")

    services = {s.service for s in spans}
    assert {"gateway", CATEGORY} <= services, services
    [request] = [s for s in spans if s.span.kind == SERVER]
    assert request.service == "gateway" and request.span.name == "POST /v1/runs"
    assert request.span.parent_span_id.hex() == CLIENT_SPAN_ID  # the caller's traceparent
    sql = [s for s in spans if s.attribute("db.system") == "postgresql"]
    assert any(s.service == "gateway" and s.span.kind == CLIENT for s in sql), "no gateway SQL"
    assert any(s.service == CATEGORY for s in sql), "no worker SQL (the attempt's end)"
    # The worker's run hangs under the gateway's Kafka send of its request, which hangs under
    # the submission, which hangs under the request: the outbox in between keeps the trace.
    [run] = [s for s in spans if s.span.name == f"run {CATEGORY}.log_line"]
    assert run.service == CATEGORY and run.attribute("runmesh.run_id") == run_id
    send = parent_of(run, spans)
    assert (send.service, send.span.kind, send.attribute("messaging.system")) == (
        "gateway",
        PRODUCER,
        "kafka",
    )
    submission = parent_of(send, spans)
    assert submission.span.name == f"submit {CATEGORY}.log_line"
    assert parent_of(submission, spans).span.span_id == request.span.span_id
    # The worker's own Kafka sends (the run's events) are in the trace too, under the run.
    run_sends = [s for s in spans if s.service == CATEGORY and s.span.kind == PRODUCER]
    assert any(s.span.parent_span_id == run.span.span_id for s in run_sends)

    records = [orjson.loads(line) for line in worker.log_text().splitlines() if line.strip()]
    [line] = [record for record in records if record.get("message") == "found"]
    assert line["run_id"] == run_id and line["trace_id"] == TRACE_ID
