"""Typed artifacts between pipeline steps (issue 16 item 2, runtime half), over real HTTP,
broker, PostgreSQL and S3: a step saves a value with a serializer its plugin registers, a
later step receives the value back, in the worker and in a job's process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from runmesh.core.settings import Settings
from runmesh.storage import platform_storage

from .test_pipelines import ended, http, result_of, start, step, tenant

__all__ = ["http", "tenant"]  # fixtures

pytestmark = pytest.mark.slow

ROWS = [["image", "boxes"], ["a.png", "3"], ["b, with a comma.png", "0"]]
REFERENCE = "${{ steps.save.result.report }}"


async def artifact_events(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """The `run.artifact` events of a run, as `GET /v1/runs/{id}/events` lists them."""
    answer = await http.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    return [event for event in answer.json() if event["type"] == "run.artifact"]


def step_run(pipeline: dict[str, Any], name: str) -> str:
    [run_id] = [each["run_id"] for each in pipeline["steps"] if each["step"] == name]
    return str(run_id)


async def error_of(http: httpx.AsyncClient, pipeline: dict[str, Any], name: str) -> Any:
    return (await http.get(f"/v1/runs/{step_run(pipeline, name)}")).json()["error"]


@pytest.mark.parametrize("reader", ["read_report", "read_report_job"])
async def test_a_step_receives_the_value_an_earlier_step_saved(
    http: httpx.AsyncClient, settings: Settings, tenant: str, reader: str
) -> None:
    steps = {
        "save": step("save_report", {"rows": ROWS}),
        "read": step(reader, {"report": REFERENCE}, "save"),
    }
    done = await ended(http, (await start(http, steps))["run"]["id"], timeout=120)
    assert done["run"]["state"] == "succeeded", done
    assert await result_of(http, done, "read") == {"rows": ROWS}

    saved = (await result_of(http, done, "save"))["report"]
    save_run = step_run(done, "save")
    assert saved["type"] == "report:rows" and saved["serializer"] == "testkit.csv-rows"
    key = f"runs/{tenant}/{save_run}/artifacts/report.csv"
    assert saved["uri"] == f"s3://{settings.s3.bucket}/{key}"
    # The bytes are the plugin serializer's; the run's artifact event says how to read them.
    async with platform_storage(settings.s3) as bucket:
        stored = await bucket.read_bytes(key, max_bytes=1 << 20)
    assert stored.decode().splitlines()[2] == '"b, with a comma.png",0'
    [event] = await artifact_events(http, save_run)
    payload = event["payload"]
    assert (payload["type"], payload["serializer"], payload["checksum"]) == (
        "report:rows",
        "testkit.csv-rows",
        saved["checksum"],
    )


async def test_an_artifact_of_another_tenant_or_with_changed_bytes_is_refused(
    http: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    bucket = f"s3://{settings.s3.bucket}"
    for uri in (
        f"{bucket}/runs/another-tenant/x/artifacts/report.csv",
        f"{bucket}/runs/{tenant}/../another-tenant/x/artifacts/report.csv",  # out by `..`
    ):
        foreign = {
            "name": "report.csv",
            "uri": uri,
            "type": "report:rows",
            "serializer": "testkit.csv-rows",
        }
        reading = await start(http, {"read": step("read_report", {"report": foreign})})
        refused = await ended(http, reading["run"]["id"])
        assert refused["run"]["state"] == "failed", refused
        error = await error_of(http, refused, "read")
        assert error["type"] == "ArtifactError", error
        assert "only the tenant's own runs' artifacts are read" in error["message"]

    saved = await ended(
        http, (await start(http, {"save": step("save_report", {"rows": ROWS})}))["run"]["id"]
    )
    report = (await result_of(http, saved, "save"))["report"]
    async with platform_storage(settings.s3) as bucket:
        await bucket.write_bytes(report["uri"].split("/", 3)[3], b"tampered,1\n")
    changed = await ended(
        http, (await start(http, {"read": step("read_report", {"report": report})}))["run"]["id"]
    )
    error = await error_of(http, changed, "read")
    assert error["type"] == "ArtifactError", error
    assert "changed since it was saved" in error["message"]
