"""Typed pipeline steps over real HTTP, broker and PostgreSQL: the types an action declares in
its config.yaml reach GET /v1/plugins, a step fed an output type its input does not take and a
reference to an output its source does not give are refused before anything runs, and a
well-typed chain runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .test_pipelines import ended, http, result_of, start, step, tenant

__all__ = ["http", "tenant"]  # fixtures

pytestmark = pytest.mark.slow


def chain(fmt: str, dataset: str = "${{ steps.make.result.uri }}") -> dict[str, Any]:
    return {
        "make": step("make_dataset", {"format": fmt}),
        "use": step(
            "use_dataset", {"dataset": dataset, "source_run": "${{ steps.make.run_id }}"}, "make"
        ),
    }


async def refused(http: httpx.AsyncClient, steps: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = await http.post(
        "/v1/pipelines", json={"pipeline": {"name": "typed", "steps": steps}, "params": params}
    )
    assert response.status_code == 422, response.text
    assert (await http.get("/v1/runs")).json()["items"] == []  # nothing ran
    problem: dict[str, Any] = response.json()
    return problem


async def test_declared_types_are_in_the_plugin_listing(http: httpx.AsyncClient) -> None:
    versions = (await http.get("/v1/plugins/testkit")).json()["versions"]
    actions = versions[-1]["actions"]
    assert actions["make_dataset"]["outputs"]["run"] == "dataset:{params.format|coco}"
    assert actions["use_dataset"]["inputs"]["dataset"] == ["dataset:coco", "dataset:yolo"]
    assert actions["echo"]["inputs"] == {} and actions["echo"]["outputs"] == {}


async def test_an_incompatible_type_is_refused_naming_step_input_and_both_types(
    http: httpx.AsyncClient,
) -> None:
    problem = await refused(http, chain("pascal_voc"))
    assert problem["detail"] == (
        "step 'use': input dataset of test.use_dataset takes dataset:coco or dataset:yolo, "
        "but steps.make.result.uri is dataset:pascal_voc (from step 'make', test.make_dataset)"
    )
    [error] = problem["errors"]
    assert error["loc"] == ["body", "pipeline", "steps", "use", "params", "dataset"]

    # The type follows the source step's params, pipeline params included.
    fmt = {
        "make": step("make_dataset", {"format": "${{ params.fmt }}"}),
        **{"use": chain("x")["use"]},
    }
    problem = await refused(http, fmt, fmt="dm")
    assert "but steps.make.result.uri is dataset:dm" in problem["detail"]


async def test_a_reference_to_an_output_the_source_does_not_give_is_refused(
    http: httpx.AsyncClient,
) -> None:
    problem = await refused(http, chain("coco", "${{ steps.make.result.path }}"))
    assert problem["detail"] == (
        "step 'use' reads steps.make.result.path, which step 'make' (test.make_dataset) does "
        "not give (its result keys: format, uri)"
    )


async def test_a_well_typed_chain_runs_and_untyped_actions_are_not_checked(
    http: httpx.AsyncClient,
) -> None:
    started = await start(http, chain("yolo"))
    done = await ended(http, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    [make_run] = [s["run_id"] for s in done["steps"] if s["step"] == "make"]
    assert await result_of(http, done, "use") == {
        "used": "s3://datasets/yolo",
        "source_run": make_run,
    }
    # The default format (coco) where the param is not given; echo declares nothing.
    untyped = {
        "make": step("make_dataset"),
        "echo": step("echo", {"name": "${{ steps.make.result.format }}", "count": 1}, "make"),
        "use": step("use_dataset", {"dataset": "${{ steps.make.result.uri }}"}, "make"),
    }
    done = await ended(http, (await start(http, untyped))["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
