"""Supervised processes (issue 19, item 5): a run whose worker died is taken over by its next
attempt, and the run says so (`attempt 2 after worker lost`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from runmesh.common.kafka import make_producer
from runmesh.common.settings import Settings
from runmesh.common.testing import eventually
from runmesh.gateway.run_state import WORKER_LOST, RunSnapshot, apply_events

from .conftest import GatewayHandle
from .test_aggregator import Events, produce


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A tenant of the test's own: the hand-made events carry none, so they get this one."""
    return settings.model_copy(update={"tenant": f"sup-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    instance = make_producer(settings)
    await instance.start()
    yield instance
    await instance.stop()


def test_a_later_attempt_of_an_unfinished_run_is_a_retry_after_a_lost_worker() -> None:
    run = Events()
    first = apply_events(RunSnapshot(), [run.started(1), run.progress(3, 10, 1)])
    assert (first.attempt, first.retry_reason) == (1, None)
    second = apply_events(first, [run.started(2)])
    assert (second.state, second.attempt, second.retry_reason) == ("running", 2, WORKER_LOST)
    # The reason stays with the attempt, also once it ended; a stale event of attempt 1
    # changes nothing.
    ended = apply_events(second, [run.progress(9, 10, 1), run.succeeded(2)])
    assert (ended.state, ended.attempt, ended.retry_reason) == ("succeeded", 2, WORKER_LOST)


async def test_the_run_says_attempt_2_after_worker_lost(
    gateway: GatewayHandle, settings: Settings, producer: AIOKafkaProducer
) -> None:
    lost, healthy = Events(), Events()
    token = await gateway.token(settings.tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as api:

        async def run(events: Events, **expected: Any) -> dict[str, Any] | None:
            response = await api.get(f"/v1/runs/{events.run_id}")
            if response.status_code != 200:
                return None
            body: dict[str, Any] = response.json()
            return body if all(body[k] == v for k, v in expected.items()) else None

        # Attempt 1 starts and reports, then its worker dies: no terminal event.
        await produce(producer, settings, lost.started(1), lost.progress(3, 10, 1))
        await produce(producer, settings, healthy.started(1), healthy.succeeded(1))
        first = await eventually(
            lambda: run(lost, attempt=1, state="running"), timeout=30, message="attempt 1"
        )
        assert first["retry_reason"] is None
        # The request is delivered again: attempt 2 starts while attempt 1 never ended.
        await produce(producer, settings, lost.started(2))
        second = await eventually(lambda: run(lost, attempt=2), timeout=30, message="attempt 2")
        assert (second["state"], second["retry_reason"]) == ("running", "worker lost")
        await produce(producer, settings, lost.succeeded(2))
        done = await eventually(
            lambda: run(lost, state="succeeded"), timeout=30, message="attempt 2 never ended"
        )
        assert (done["attempt"], done["retry_reason"]) == (2, "worker lost")
        # A run that ended on its first attempt has no reason.
        ok = await eventually(lambda: run(healthy, state="succeeded"), timeout=30)
        assert (ok["attempt"], ok["retry_reason"]) == (1, None)
        # Lists carry it too.
        listed = (await api.get("/v1/runs")).json()["items"]
        assert {(r["id"], r["retry_reason"]) for r in listed} == {
            (str(lost.run_id), "worker lost"),
            (str(healthy.run_id), None),
        }
