"""Process logs an operator can search (issue 22 item 1): JSON records that carry the service,
and within a run its id, tenant, attempt and trace id; text on a terminal."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from pathlib import Path

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pythonjsonlogger.json import JsonFormatter

from runmesh.core.events import RunRequest
from runmesh.core.logs import RunContextFilter, bind_run, configure_logging, json_formatter
from runmesh.core.settings import Settings

from .conftest import CATEGORY, RunClient, WorkerProcess

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def capture(service: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    handler.addFilter(RunContextFilter(service))
    logger = logging.getLogger(f"test-logs-{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.propagate = False
    return logger, out


async def test_a_runs_records_carry_it_and_other_records_do_not() -> None:
    logger, out = capture("export")
    run_id = uuid.uuid4()
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1)))

    async def handle_run() -> None:
        bind_run(run_id, tenant="acme", attempt=2)
        with trace.use_span(span):
            # A sync action's thread gets the task's context (the run and the span) too.
            await asyncio.to_thread(logger.warning, "inside %s", "the run")

    await asyncio.create_task(handle_run())
    logger.warning("between runs")
    inside, outside = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert inside == {
        "ts": inside["ts"],
        "level": "WARNING",
        "logger": logger.name,
        "message": "inside the run",
        "service": "export",
        "run_id": str(run_id),
        "tenant": "acme",
        "attempt": 2,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    assert outside["message"] == "between runs" and outside["service"] == "export"
    assert "run_id" not in outside and "trace_id" not in outside


def test_auto_is_text_on_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    kept = (list(root.handlers), root.level)
    try:
        monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
        assert isinstance(configure_logging("gateway").formatter, JsonFormatter)
        assert not isinstance(configure_logging("gateway", "text").formatter, JsonFormatter)
        assert len(root.handlers) == 1  # replaced, not added to
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in kept[0]:
            root.addHandler(handler)
        root.setLevel(kept[1])


@pytest.mark.slow
async def test_a_worker_process_logs_a_runs_lines_as_json_with_its_ids(
    settings: Settings, client: RunClient, tmp_path: Path
) -> None:
    worker = WorkerProcess(settings.model_copy(update={"log_format": "json"}), tmp_path / "w.log")
    try:
        await worker.wait_ready()
        request = RunRequest(
            category=CATEGORY, action="log_line", params={"message": "searchable"}, tenant="acme"
        )
        traceparent = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01".encode()
        await client.send(request, headers=[("traceparent", traceparent)])
        end = await client.wait_terminal(request.run_id, timeout=120)
        assert end.type == "run.succeeded", end
    finally:
        worker.close()
    records = [orjson.loads(line) for line in worker.log_text().splitlines() if line.strip()]
    [line] = [record for record in records if record["message"] == "searchable"]
    assert line["run_id"] == str(request.run_id)
    assert (line["tenant"], line["attempt"], line["service"]) == ("acme", 1, CATEGORY)
    assert line["trace_id"] == f"{TRACE_ID:032x}"  # the trace the request came with
    assert all("level" in record and "ts" in record for record in records)
