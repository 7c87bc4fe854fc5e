"""Attack 6 (input): hostile input never makes a 500 and is never stored.

Each test sends what a hostile (or careless) tenant could: numbers past PostgreSQL's integer
columns, dates whose UTC is outside what a datetime holds, NUL and lone surrogates (which
PostgreSQL's text and jsonb cannot hold), JSON nested 900 deep, bodies of many megabytes, a
plugin archive with a NUL in an entry name. The gateway answers each with a problem+json
4xx that says what is wrong.
"""

from __future__ import annotations

import base64
import contextlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from runmesh.core.settings import Settings
from runmesh.gateway.request_guard import MAX_JSON_DEPTH

from ..conftest import GatewayHandle

INT64_OVER = str(2**63)  # one past PostgreSQL's bigint
INT32_OVER = str(2**31)  # one past PostgreSQL's integer (a run's attempt)
CATEGORY = "hostile"
PARAMS_SCHEMA: dict[str, Any] = {"type": "object"}  # any params: the schema lets them through


@pytest.fixture(scope="module")
async def gateway(module_settings: Settings) -> AsyncIterator[GatewayHandle]:
    """One gateway for the module: every test has a tenant of its own, and none changes the
    gateway (a gateway per test would spend most of the module stopping them)."""
    handle = GatewayHandle(module_settings)
    await handle.start()
    yield handle
    await handle.stop()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        yield http


@pytest.fixture
async def http(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """The tenant's client, with a plugin of its own whose `noop` action takes any params
    (recorded as publishing records one, without a worker: runs stay queued)."""
    manifest = {
        "code": "hostile",
        "version": "1.0.0",
        "category": CATEGORY,
        "actions": {"noop": {"method": "task", "params_schema": PARAMS_SCHEMA}},
    }
    await gateway.app.state.deps.pool.execute(
        "INSERT INTO runs.plugins (tenant, code, version, category, builtin, manifest)"
        " VALUES ($1, 'hostile', '1.0.0', $2, false, $3)",
        tenant,
        CATEGORY,
        manifest,
    )
    async with api(gateway, tenant) as client:
        yield client


async def a_run(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/v1/runs", json={"category": CATEGORY, "action": "noop", "plugin": "hostile"}
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    """The problem+json body of a refusal with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def error_locs(problem: dict[str, Any]) -> list[list[Any]]:
    return [error["loc"] for error in problem.get("errors", [])]


# -- numbers past PostgreSQL's integer columns -----------------------------------------------


async def test_ids_and_positions_past_int64_are_422(http: httpx.AsyncClient) -> None:
    run_id = await a_run(http)
    for path, loc in [
        (f"/v1/tasks?after_id={INT64_OVER}", ["query", "after_id"]),
        (f"/v1/tasks/{INT64_OVER}", ["path", "task_id"]),
        (f"/v1/tasks/{INT64_OVER}/assignments", ["path", "task_id"]),
        (f"/v1/data-units/{INT64_OVER}", ["path", "unit_id"]),
        (f"/v1/runs/{run_id}/logs?after={INT64_OVER}", ["query", "after"]),
        (f"/v1/runs/{run_id}/logs?attempt={INT32_OVER}", ["query", "attempt"]),
        (f"/v1/runs/{run_id}/artifacts/{INT64_OVER}", ["path", "event_id"]),
        (f"/v1/runs/{run_id}/events?last_event_id={INT64_OVER}", ["query", "last_event_id"]),
    ]:
        problem = refused(await http.get(path, headers={"Accept": "application/json"}))
        assert loc in error_locs(problem), (path, problem)


async def test_a_last_event_id_header_past_int64_is_422(http: httpx.AsyncClient) -> None:
    run_id = await a_run(http)
    for path in (f"/v1/runs/{run_id}/events", "/v1/events"):
        problem = refused(
            await http.get(
                path, headers={"Accept": "application/json", "Last-Event-ID": INT64_OVER}
            )
        )
        assert "Last-Event-ID" in problem["detail"]


# -- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",  # UTC would be in year 0
        "9999-12-31T23:59:59-01:00",  # UTC would be in year 10000
        "0000-01-01T00:00:00",
        "99999-01-01T00:00:00",
    ],
)
async def test_dates_outside_what_utc_can_hold_are_422(http: httpx.AsyncClient, value: str) -> None:
    for name in ("created_after", "created_before"):
        problem = refused(await http.get("/v1/runs", params={name: value}))
        assert ["query", name] in error_locs(problem)


async def test_a_forged_cursor_with_such_a_date_is_422(http: httpx.AsyncClient) -> None:
    raw = orjson.dumps(["0001-01-01T00:00:00+01:00", str(uuid.uuid4())])
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for path in ("/v1/runs", "/v1/projects", "/v1/storages", "/v1/models"):
        problem = refused(await http.get(path, params={"cursor": cursor}))
        assert ["query", "cursor"] in error_locs(problem), path


# -- NUL and lone surrogates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params_json", "loc"),
    [
        (b'{"name": "a\\u0000b"}', ["body", "params", "name"]),
        (b'{"a\\u0000": 1}', ["body", "params"]),
        (b'{"deep": [1, {"x": "\\ud800"}]}', ["body", "params", "deep", 1, "x"]),
        (b'{"name": "\\udfff tail"}', ["body", "params", "name"]),
        ('{"name": "raw \ud800"}'.encode("utf-8", "surrogatepass"), ["body", "params", "name"]),
    ],
)
async def test_nul_and_lone_surrogates_in_a_json_body_are_422_naming_the_field(
    http: httpx.AsyncClient, params_json: bytes, loc: list[Any]
) -> None:
    body = b'{"category": "hostile", "action": "noop", "plugin": "hostile", "params": '
    response = await http.post(
        "/v1/runs", content=body + params_json + b"}", headers={"Content-Type": "application/json"}
    )
    problem = refused(response)
    assert loc in error_locs(problem), problem
    assert "NUL" in problem["errors"][0]["msg"] or "surrogate" in problem["errors"][0]["msg"]


async def test_nul_in_query_filters_and_path_segments_is_422(http: httpx.AsyncClient) -> None:
    for path, loc in [
        ("/v1/runs?category=a%00b", ["query", "category"]),
        ("/v1/runs?action=%00", ["query", "action"]),
        ("/v1/plugins?data_type=x%00", ["query", "data_type"]),
        ("/v1/plugins/a%00b", ["path"]),
    ]:
        problem = refused(await http.get(path))
        assert loc in error_locs(problem), (path, problem)
    problem = refused(await http.delete("/v1/plugins/a%00b/versions/1.0.0"))
    assert ["path"] in error_locs(problem)


# -- depth and size ----------------------------------------------------------------------------


async def test_params_nested_900_deep_are_422_naming_the_limit(http: httpx.AsyncClient) -> None:
    head = b'{"category": "hostile", "action": "noop", "plugin": "hostile", "params": '
    deep = b'{"a": ' * 900 + b'"leaf"' + b"}" * 900
    response = await http.post(
        "/v1/runs", content=head + deep + b"}", headers={"Content-Type": "application/json"}
    )
    problem = refused(response)
    assert f"deeper than {MAX_JSON_DEPTH}" in problem["errors"][0]["msg"]

    def submission(lists: int) -> dict[str, Any]:
        nested: Any = 1
        for _ in range(lists):
            nested = [nested]
        return {
            "category": CATEGORY,
            "action": "noop",
            "plugin": "hostile",
            "params": {"x": nested},
        }

    # The body and params objects are two levels: the limit leaves MAX_JSON_DEPTH - 2 lists.
    inside = await http.post("/v1/runs", json=submission(MAX_JSON_DEPTH - 2))
    assert inside.status_code == 202, inside.text
    over = refused(await http.post("/v1/runs", json=submission(MAX_JSON_DEPTH - 1)))
    assert f"deeper than {MAX_JSON_DEPTH}" in over["errors"][0]["msg"]


async def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not(
    gateway: GatewayHandle, http: httpx.AsyncClient
) -> None:
    limit = gateway.settings.gateway_max_body_bytes
    document = orjson.dumps({"annotations": [], "padding": "x" * (limit + 1)})

    problem = refused(await http.put("/v1/tasks/1/data", content=document), 413)
    assert (
        f"{limit:,}" in problem["detail"] and "RUNMESH_GATEWAY_MAX_BODY_BYTES" in problem["detail"]
    )

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        for start in range(0, len(document), 64 * 1024):
            yield document[start : start + 64 * 1024]

    chunked = await http.put(
        "/v1/tasks/1/data", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in chunked.request.headers
    refused(chunked, 413)

    # A plugin archive keeps its own, larger limit: over the body limit, it is read and checked.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("padding.bin", uuid.uuid4().bytes * (limit // 16 + 1))
    response = await http.post("/v1/plugins", files={"archive": ("p.zip", archive.getvalue())})
    assert "config.yaml" in refused(response, 422)["detail"]


# -- a plugin archive entry with a NUL ---------------------------------------------------------


def nul_named_archive() -> bytes:
    """A zip whose second entry's raw name is `plugin/ok.py` NUL `../../evil.py` (zipfile cuts
    names at NUL, so a placeholder of the same length is written and patched)."""
    placeholder = "plugin/ok.py#../../evil.py"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.yaml", "code: x\n")
        archive.writestr(placeholder, "print('pwned')\n")
    return buffer.getvalue().replace(placeholder.encode(), b"plugin/ok.py\x00../../evil.py")


async def test_a_plugin_archive_entry_name_with_a_nul_is_422_naming_it(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v1/plugins", files={"archive": ("p.zip", nul_named_archive())})
    problem = refused(response)
    assert "plugin/ok.py\\x00../../evil.py" in problem["detail"]


async def test_a_body_that_is_not_text_or_not_a_form_is_422_not_400(
    http: httpx.AsyncClient,
) -> None:
    not_utf8 = await http.post(
        "/v1/runs", content=b"\x80\x81{}", headers={"Content-Type": "application/json"}
    )
    assert "not JSON text" in refused(not_utf8)["errors"][0]["msg"]
    fields = b"".join(
        b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n1\r\n' % i for i in range(20)
    )
    too_many_fields = await http.post(
        "/v1/plugins",
        content=fields + b"--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert "not a plugin upload form" in refused(too_many_fields)["detail"]
