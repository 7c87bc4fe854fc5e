"""Pipelines over real HTTP, broker and PostgreSQL: steps as child runs, moved forward by their
terminal events, references resolved from earlier results, failures skipping dependants,
cancel reaching every step, and definitions refused before anything runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runmesh.core.pipelines import PipelineSpec
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually

from .conftest import GatewayHandle, RunClient, WorkerFactory
from .test_cli import runmesh
from .test_gateway_api import api, wait_for_plugins

pytestmark = pytest.mark.slow


@pytest.fixture
def tenant() -> str:
    return f"pipe-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def http(
    gateway: GatewayHandle, worker: WorkerFactory, tenant: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant of the test's own, with a worker of the test category serving it."""
    async with api(gateway, tenant) as client, worker():
        await wait_for_plugins(client)
        yield client


def step(action: str, params: dict[str, Any] | None = None, *needs: str) -> dict[str, Any]:
    return {"category": "test", "action": action, "params": params or {}, "needs": list(needs)}


async def start(http: httpx.AsyncClient, steps: dict[str, Any], **body: Any) -> dict[str, Any]:
    pipeline = {"name": "test pipeline", "steps": steps, **body.pop("pipeline", {})}
    response = await http.post("/v1/pipelines", json={"pipeline": pipeline, **body})
    assert response.status_code == 202, response.text
    started: dict[str, Any] = response.json()
    return started


async def ended(http: httpx.AsyncClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The pipeline once its run ended."""

    async def done() -> dict[str, Any] | None:
        response = await http.get(f"/v1/pipelines/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["run"]["state"] in ("succeeded", "failed", "cancelled") else None

    found: dict[str, Any] = await eventually(
        done, timeout=timeout, interval=0.1, message=f"pipeline {run_id} never ended"
    )
    return found


def states(pipeline: dict[str, Any]) -> dict[str, str]:
    return {each["step"]: each["state"] for each in pipeline["steps"]}


async def result_of(http: httpx.AsyncClient, pipeline: dict[str, Any], name: str) -> Any:
    [run_id] = [each["run_id"] for each in pipeline["steps"] if each["step"] == name]
    run = (await http.get(f"/v1/runs/{run_id}")).json()
    assert run["parent_run_id"] == pipeline["run"]["id"]
    return run["result"]


async def test_a_chain_passes_results_and_params_down_and_succeeds(
    http: httpx.AsyncClient,
) -> None:
    started = await start(
        http,
        {
            "first": step("echo", {"name": "${{ params.who }}", "count": 2}),
            "second": step(
                "echo",
                {
                    "name": "after ${{ steps.first.result.name }}",
                    "count": "${{ steps.first.result.count }}",
                },
                "first",
            ),
        },
        pipeline={"params": {"who": "nobody"}},
        params={"who": "bo"},
    )
    assert started["run"]["category"] == "pipeline"
    assert states(started) == {"first": "submitted", "second": "pending"}

    pipeline = await ended(http, started["run"]["id"])

    assert pipeline["run"]["state"] == "succeeded"
    assert pipeline["run"]["percent"] == 100
    assert states(pipeline) == {"first": "succeeded", "second": "succeeded"}
    assert await result_of(http, pipeline, "second") == {"name": "after bo", "count": 2}
    children = (await http.get("/v1/runs", params={"parent_run_id": started["run"]["id"]})).json()
    assert sorted(run["id"] for run in children["items"]) == sorted(
        each["run_id"] for each in pipeline["steps"]
    )


async def test_a_steps_policy_reaches_its_run(
    http: httpx.AsyncClient, gateway: GatewayHandle
) -> None:
    policy = {"timeout_s": 30, "max_attempts": 2, "retry_backoff_s": 0.5}
    steps = {"a": {**step("noop"), **policy}, "b": step("noop", {}, "a")}
    done = await ended(http, (await start(http, steps))["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    runs = {each["step"]: uuid.UUID(each["run_id"]) for each in done["steps"]}
    stored = {
        name: await gateway.app.state.deps.pool.fetchrow(
            "SELECT timeout_s, max_attempts, retry_backoff_s FROM runs.runs WHERE id = $1", run_id
        )
        for name, run_id in runs.items()
    }
    assert tuple(stored["a"]) == (30, 2, 0.5)
    assert tuple(stored["b"]) == (None, None, None)


async def test_fan_out_and_fan_in(http: httpx.AsyncClient) -> None:
    started = await start(
        http,
        {
            "root": step("echo", {"name": "r", "count": 1}),
            "left": step("echo", {"name": "${{ steps.root.result.name }}-l", "count": 1}, "root"),
            "right": step("echo", {"name": "${{ steps.root.result.name }}-r", "count": 3}, "root"),
            "join": step(
                "echo",
                {
                    "name": "${{ steps.left.result.name }}+${{ steps.right.result.name }}",
                    "count": "${{ steps.right.result.count }}",
                },
                "left",
                "right",
            ),
        },
    )

    pipeline = await ended(http, started["run"]["id"])

    assert pipeline["run"]["state"] == "succeeded", pipeline
    assert await result_of(http, pipeline, "join") == {"name": "r-l+r-r", "count": 3}


async def test_a_failed_step_skips_its_dependants_and_independent_steps_finish(
    http: httpx.AsyncClient,
) -> None:
    started = await start(
        http,
        {
            "root": step("noop"),
            "bad": step("fail", {"message": "no luck"}, "root"),
            "after": step("noop", {}, "bad"),
            "side": step("sleep", {"seconds": 0.3, "steps": 3}, "root"),
            "typo": step("echo", {"name": "${{ steps.root.result.missing }}", "count": 1}, "root"),
        },
    )

    pipeline = await ended(http, started["run"]["id"])

    assert states(pipeline) == {
        "root": "succeeded",
        "bad": "failed",
        "after": "skipped",
        "side": "succeeded",
        "typo": "failed",
    }
    error = pipeline["run"]["error"]
    assert error["type"] == "StepFailed"
    assert "step 'bad' failed" in error["message"] and "no luck" in error["message"]
    typo = next(each for each in pipeline["steps"] if each["step"] == "typo")
    assert "steps.root.result.missing" in typo["error"]


async def test_cancelling_a_pipeline_ends_every_step(http: httpx.AsyncClient) -> None:
    started = await start(
        http,
        {
            "long": step("sleep", {"seconds": 30, "steps": 300}),
            "later": step("noop", {}, "long"),
        },
    )
    [long_run] = [each["run_id"] for each in started["steps"] if each["step"] == "long"]
    await eventually(
        lambda: _state(http, long_run, "running"), timeout=30, message="long never started"
    )

    response = await http.post(f"/v1/runs/{started['run']['id']}/cancel")
    assert response.status_code == 202, response.text
    pipeline = await ended(http, started["run"]["id"], timeout=30)

    assert pipeline["run"]["state"] == "cancelled"
    assert states(pipeline) == {"long": "cancelled", "later": "cancelled"}
    assert (await http.get(f"/v1/runs/{long_run}")).json()["state"] == "cancelled"


async def _state(http: httpx.AsyncClient, run_id: str, state: str) -> bool:
    return bool((await http.get(f"/v1/runs/{run_id}")).json()["state"] == state)


@pytest.mark.parametrize(
    ("steps", "params", "named"),
    [
        ({"a": step("noop", {}, "b"), "b": step("noop", {}, "a")}, {}, "cycle"),
        ({"a": step("noop", {}, "ghost")}, {}, "ghost"),
        (
            {"a": step("noop"), "b": step("echo", {"name": "${{ steps.a.result.x }}"})},
            {},
            "does not need",
        ),
        ({"a": step("echo", {"name": "${{ params.who }}", "count": 1})}, {}, "who"),
        ({"a": step("nope")}, {}, "step 'a'"),
        ({"a": step("echo", {"name": "x", "count": 0})}, {}, "step 'a'"),
    ],
)
async def test_a_definition_that_cannot_run_is_refused_before_anything_runs(
    http: httpx.AsyncClient, steps: dict[str, Any], params: dict[str, Any], named: str
) -> None:
    response = await http.post(
        "/v1/pipelines", json={"pipeline": {"name": "bad", "steps": steps}, "params": params}
    )
    assert response.status_code == 422, response.text
    assert named in response.text
    runs = (await http.get("/v1/runs")).json()["items"]
    assert runs == []


async def test_the_cli_runs_a_pipeline_file_with_params_and_follows_it(
    http: httpx.AsyncClient, gateway: GatewayHandle, tenant: str, tmp_path: Path
) -> None:
    definition = tmp_path / "hello.yaml"
    definition.write_text(
        """
name: hello
params:
  who: nobody
steps:
  greet:
    category: test
    action: echo
    params: {name: "${{ params.who }}", count: "${{ params.times }}"}
  again:
    category: test
    action: echo
    needs: [greet]
    params: {name: "again ${{ steps.greet.result.name }}", count: 1}
"""
    )
    token = await gateway.token(tenant)
    args = ["pipeline", "run", str(definition), "-p", "who=bo", "-p", "times=2", "--wait"]
    code, out, err = await runmesh(*args, gateway=gateway, token=token, home=tmp_path)

    assert code == 0, out + err
    assert "greet: succeeded" in out and "again: succeeded" in out
    assert out.strip().endswith("pipeline succeeded"), out
    run_id = out.split()[2]
    code, out, err = await runmesh(
        "pipeline", "show", run_id[:8], gateway=gateway, token=token, home=tmp_path
    )
    assert code == 0 and '"who": "bo"' in out, out + err

    missing = tmp_path / "missing.yaml"
    code, _, err = await runmesh(
        "pipeline", "run", str(missing), gateway=gateway, token=token, home=tmp_path
    )
    assert code == 1 and "cannot read pipeline file" in err and "Traceback" not in err


async def test_a_gateway_restarted_mid_pipeline_finishes_it_running_each_step_once(
    http: httpx.AsyncClient, gateway: GatewayHandle, settings: Settings
) -> None:
    events = RunClient(settings)
    await events.start()
    try:
        started = await start(
            http,
            {
                "one": step("sleep", {"seconds": 1.5, "steps": 5}),
                "two": step("echo", {"name": "${{ steps.one.result.slept }}s", "count": 1}, "one"),
                "three": step("noop", {}, "two"),
            },
        )
        [one] = [uuid.UUID(s["run_id"]) for s in started["steps"] if s["step"] == "one"]
        await events.wait_event(one, "run.started")
        # The gateway goes away while step one runs; the worker's events wait in Kafka.
        await gateway.stop()
        await events.wait_terminal(one)
        await gateway.start()

        pipeline = await ended(http, started["run"]["id"])

        assert pipeline["run"]["state"] == "succeeded", pipeline
        for each in pipeline["steps"]:
            # This test's own consumer may read a step's events after the gateway did.
            await events.wait_terminal(uuid.UUID(each["run_id"]), timeout=120)
            run_events = events.events[uuid.UUID(each["run_id"])]
            assert [e.type for e in run_events].count("run.started") == 1, each
    finally:
        await events.stop()


async def test_resume_reruns_what_did_not_succeed_and_reuses_what_did(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    events = RunClient(settings)
    await events.start()
    try:
        # `bad` fails before its run starts (count 0 is below echo's minimum: checked once
        # its params are resolved, as they take first's result), so `last` is skipped and
        # `side` finishes.
        started = await start(
            http,
            {
                "first": step("echo", {"name": "f", "count": 1}),
                "bad": step(
                    "echo",
                    {"name": "${{ steps.first.result.name }}b", "count": "${{ params.n }}"},
                    "first",
                ),
                "last": step("echo", {"name": "${{ steps.bad.result.name }}", "count": 1}, "bad"),
                "side": step("noop", {}, "first"),
            },
            pipeline={"params": {"n": 0}},
        )
        failed = await ended(http, started["run"]["id"])
        assert failed["run"]["state"] == "failed"
        assert states(failed) == {
            "first": "succeeded",
            "bad": "failed",
            "last": "skipped",
            "side": "succeeded",
        }
        resuming = await http.post(f"/v1/pipelines/{started['run']['id'][:8]}/resume")
        assert resuming.status_code == 202, resuming.text
        second = resuming.json()
        assert second["run"]["id"] != started["run"]["id"]
        assert second["run"]["parent_run_id"] == started["run"]["id"]
        # Without a change of params `bad` fails the same way again.
        assert (await ended(http, second["run"]["id"]))["run"]["state"] == "failed"

        third = await http.post(
            f"/v1/pipelines/{second['run']['id']}/resume", json={"params": {"n": 2}}
        )
        assert third.status_code == 202, third.text
        resumed = await ended(http, third.json()["run"]["id"])

        assert resumed["run"]["state"] == "succeeded", resumed
        assert resumed["params"] == {"n": 2}
        before = {each["step"]: each["run_id"] for each in failed["steps"]}
        after = {each["step"]: each["run_id"] for each in resumed["steps"]}
        assert after["first"] == before["first"] and after["side"] == before["side"]
        assert after["bad"] != before["bad"] and after["last"] != before["last"]
        assert await result_of(http, resumed, "last") == {"name": "fb", "count": 1}
        first_events = events.events[uuid.UUID(before["first"])]
        assert [e.type for e in first_events].count("run.started") == 1  # taken over, not rerun

        again = await http.post(f"/v1/pipelines/{resumed['run']['id']}/resume")
        assert again.status_code == 409 and "only a failed or cancelled" in again.text
    finally:
        await events.stop()


@pytest.mark.parametrize("path", sorted(Path("examples/pipelines").glob("*.yaml")), ids=str)
def test_the_example_pipelines_are_valid_definitions(path: Path) -> None:
    PipelineSpec.model_validate(yaml.safe_load(path.read_text()))
