"""Pipelines submitted by a Kafka producer (`PipelineRequest` on `runmesh.pipelines`), over a
real broker, gateway and PostgreSQL: started as a REST submission would be, once however
often the request is delivered, and refused requests become failed runs saying why."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from runmesh.core.events import PipelineRequest, encode
from runmesh.core.kafka import make_producer
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics

from .conftest import RunClient
from .test_pipelines import ended, http, result_of, step, tenant

__all__ = ["http", "tenant"]  # fixtures

pytestmark = pytest.mark.slow


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = make_producer(settings.kafka, client_id="pipeline-producer")
    await started.start()
    yield started
    await started.stop()


async def send(producer: AIOKafkaProducer, settings: Settings, request: PipelineRequest) -> None:
    topic = Topics(settings.topic_prefix).pipelines
    await producer.send_and_wait(topic, encode(request), key=str(request.run_id).encode())


async def run_of(http: httpx.AsyncClient, run_id: uuid.UUID) -> dict[str, Any]:
    """The run once it ended (polled: it exists only once the gateway consumed the request)."""

    async def done() -> dict[str, Any] | None:
        response = await http.get(f"/v1/runs/{run_id}")
        if response.status_code == 404:
            return None
        body: dict[str, Any] = response.json()
        return body if body["state"] in ("succeeded", "failed", "cancelled") else None

    found: dict[str, Any] = await eventually(done, timeout=60, interval=0.1, message="no run")
    return found


async def test_a_produced_pipeline_runs_once_however_often_it_is_delivered(
    http: httpx.AsyncClient, producer: AIOKafkaProducer, settings: Settings, tenant: str
) -> None:
    events = RunClient(settings)
    await events.start()
    try:
        request = PipelineRequest(
            tenant=tenant,
            pipeline={
                "name": "from kafka",
                "steps": {
                    "greet": step("echo", {"name": "${{ params.who }}", "count": 1}),
                    "again": step(
                        "echo", {"name": "${{ steps.greet.result.name }}!", "count": 2}, "greet"
                    ),
                },
            },
            params={"who": "kafka"},
        )
        await send(producer, settings, request)
        await send(producer, settings, request)  # at-least-once producers repeat themselves
        pipeline = await ended(http, str((await run_of(http, request.run_id))["id"]))
        assert pipeline["run"]["state"] == "succeeded", pipeline
        assert await result_of(http, pipeline, "again") == {"name": "kafka!", "count": 2}
        for each in pipeline["steps"]:
            started = [
                e for e in events.events[uuid.UUID(each["run_id"])] if e.type == "run.started"
            ]
            assert len(started) == 1, each
        listed = (await http.get("/v1/runs", params={"category": "pipeline"})).json()["items"]
        assert [run["id"] for run in listed] == [str(request.run_id)]
    finally:
        await events.stop()


@pytest.mark.parametrize(
    ("pipeline", "why"),
    [
        (
            {"name": "loop", "steps": {"a": step("noop", {}, "b"), "b": step("noop", {}, "a")}},
            "the pipeline is not valid: ",
        ),
        ({"name": "ghost", "steps": {"a": step("teleport")}}, "step 'a': plugin testkit"),
        ({"steps": {}}, "the pipeline is not valid: name: Field required"),
    ],
)
async def test_a_refused_request_becomes_a_failed_run_saying_why(
    http: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    settings: Settings,
    tenant: str,
    pipeline: dict[str, Any],
    why: str,
) -> None:
    request = PipelineRequest(tenant=tenant, pipeline=pipeline)
    await send(producer, settings, request)
    run = await run_of(http, request.run_id)
    assert run["state"] == "failed" and run["category"] == "pipeline"
    assert run["error"]["type"] == "PipelineRefused"
    assert run["error"]["message"].startswith(why), run["error"]
    assert (await http.get("/v1/runs", params={"category": "test"})).json()["items"] == []
