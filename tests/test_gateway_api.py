"""The gateway's REST API over real HTTP, with a real worker, broker and PostgreSQL."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from runmesh.core.retries import retried
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.gateway import runs_store
from runmesh.gateway.routes.pagination import encode_key_cursor
from runmesh.sandbox import Sandbox, TansuBroker, ensure_bucket

from .conftest import GatewayHandle, RunClient, WorkerFactory, WorkerProcess

SECRET = "s3cret-value"


@pytest.fixture
def tenant() -> str:
    """A tenant of the test's own: the runs table is shared by every test of the session."""
    return f"tenant-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client authenticated as `tenant`."""
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


@pytest.fixture
async def http(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """The test tenant's client of the test's gateway."""
    async with api(gateway, tenant) as client:
        yield client


async def wait_for_plugins(http: httpx.AsyncClient, timeout: float = 30) -> None:
    """Until the worker's announcement of testkit reached the gateway's plugin table."""

    async def listed() -> bool:
        response = await http.get("/v1/plugins")
        assert response.status_code == 200, response.text
        return "testkit" in {plugin["code"] for plugin in response.json()["items"]}

    await eventually(listed, timeout=timeout, message="testkit never listed in /v1/plugins")


@contextlib.asynccontextmanager
async def announced(worker: WorkerFactory, http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Plugins known to the gateway, and no worker running afterwards (runs stay queued)."""
    async with worker():
        await wait_for_plugins(http)
    yield


async def submit(
    http: httpx.AsyncClient, action: str, params: dict[str, Any] | None = None, **body: Any
) -> dict[str, Any]:
    response = await http.post(
        "/v1/runs", json={"category": "test", "action": action, "params": params or {}, **body}
    )
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def wait_state(
    http: httpx.AsyncClient, run_id: str, *states: str, timeout: float = 30
) -> dict[str, Any]:
    """The run once its state is one of `states`."""

    async def reached() -> dict[str, Any] | None:
        response = await http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run if run["state"] in states else None

    run: dict[str, Any] = await eventually(
        reached, timeout=timeout, interval=0.1, message=f"run {run_id} never reached {states}"
    )
    return run


# -- submission and state --------------------------------------------------------------------


async def test_rest_submission_runs_to_success_with_percent_and_metrics(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker():
        await wait_for_plugins(http)
        queued = await submit(http, "echo", {"name": "ada", "count": 50, "token": SECRET})
        assert queued["state"] == "queued"
        assert queued["params"] == {"name": "ada", "count": 50, "token": "**********"}
        run = await wait_state(http, queued["id"], "succeeded", "failed")

    assert run["state"] == "succeeded", run
    assert run["percent"] == 100.0
    assert run["progress"]["echo"]["current"] == 50
    assert run["progress"]["echo"]["percent"] == 100.0
    assert run["progress"]["echo"]["eta_s"] == 0.0
    assert run["metrics"] == {"echo": {"count": 50.0}}
    assert run["result"] == {"name": "ada", "count": 50}
    assert run["plugin"] == "testkit" and run["plugin_version"] == "1.0.0"
    assert run["attempt"] == 1
    assert run["started_at"] and run["finished_at"] and run["error"] is None
    assert run["params"]["token"] == "**********"
    everything = (await http.get(f"/v1/runs/{run['id']}")).text
    everything += (await http.get("/v1/runs")).text
    assert SECRET not in everything


async def test_invalid_params_and_unknown_names_are_422_problems(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        invalid = await http.post(
            "/v1/runs", json={"category": "test", "action": "echo", "params": {"count": 0}}
        )
        unknown_action = await http.post("/v1/runs", json={"category": "test", "action": "nope"})
        unknown_category = await http.post("/v1/runs", json={"category": "zzz", "action": "x"})
        unknown_version = await http.post(
            "/v1/runs", json={"category": "test", "action": "noop", "plugin": "testkit@9.9.9"}
        )
        malformed = await http.post("/v1/runs", json={"action": "noop", "colour": "red"})

    assert invalid.status_code == 422
    assert invalid.headers["content-type"].startswith("application/problem+json")
    errors = {tuple(e["loc"]): e["msg"] for e in invalid.json()["errors"]}
    assert errors == {
        ("params", "name"): "Field required",
        ("params", "count"): "0 is less than or equal to the minimum of 0",
    }
    assert unknown_action.status_code == 422
    detail = unknown_action.json()["detail"]
    assert "'nope'" in detail and "echo" in detail and "sleep" in detail
    assert "echo" in unknown_action.json()["known_actions"]
    assert unknown_category.status_code == 422
    assert "test" in unknown_category.json()["known_categories"]
    assert unknown_version.status_code == 422
    assert "1.0.0" in unknown_version.json()["detail"]
    assert malformed.status_code == 422
    assert {tuple(e["loc"]) for e in malformed.json()["errors"]} == {
        ("body", "category"),
        ("body", "colour"),
    }


async def test_runs_are_named_and_found_by_their_name(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        nightly = await submit(http, "echo", {"name": "Nightly 100%_done", "count": 1})
        other = await submit(http, "echo", {"name": "ad hoc", "count": 1})
        unnamed = await submit(http, "noop")
        pipeline = await http.post(
            "/v1/pipelines",
            json={
                "pipeline": {
                    "name": "Weekly retrain",
                    "steps": {"n": {"category": "test", "action": "noop"}},
                }
            },
        )
        assert pipeline.status_code == 202, pipeline.text
    assert (nightly["name"], unnamed["name"]) == ("Nightly 100%_done", None)
    pipeline_run = pipeline.json()["run"]
    assert pipeline_run["name"] == "Weekly retrain"

    async def named(text: str) -> list[str]:
        response = await http.get("/v1/runs", params={"name": text})
        assert response.status_code == 200, response.text
        return [run["id"] for run in response.json()["items"]]

    assert await named("NIGHTLY") == [nightly["id"]]  # any case
    assert await named("%") == [nightly["id"]]  # a literal %, not a wildcard
    assert await named("_d") == [nightly["id"]]  # a literal _
    assert await named("d") == [other["id"], nightly["id"]]  # newest first
    assert await named("weekly") == [pipeline_run["id"]]  # a pipeline by its name
    assert await named("nobody") == []
    assert (await http.get("/v1/runs", params={"name": ""})).status_code == 422


async def test_params_over_the_message_bound_are_refused_pointing_to_s3(
    http: httpx.AsyncClient, worker: WorkerFactory, settings: Settings
) -> None:
    async with announced(worker, http):
        # Under the body limit (RUNMESH_GATEWAY_MAX_BODY_BYTES, the same 1 MiB: over it is a
        # 413), over the message bound once the request's own fields are added.
        big = "x" * (min(settings.max_message_bytes, settings.gateway_max_body_bytes) - 128)
        response = await http.post(
            "/v1/runs",
            json={"category": "test", "action": "echo", "params": {"name": big, "count": 1}},
        )
    assert response.status_code == 422
    assert "S3" in response.json()["detail"]
    listed = (await http.get("/v1/runs")).json()
    assert listed["items"] == []  # nothing was stored


async def test_the_same_idempotency_key_twice_is_one_run(
    http: httpx.AsyncClient, worker: WorkerFactory, gateway: GatewayHandle
) -> None:
    body = {"category": "test", "action": "echo", "params": {"name": "a", "count": 1}}
    async with announced(worker, http):
        first = await http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
        again = await http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
        other_body = await http.post(
            "/v1/runs", json={**body, "params": {"name": "b", "count": 1}},
            headers={"Idempotency-Key": "k-1"},
        )  # fmt: skip
        chosen_id = str(uuid.uuid4())
        by_id = await http.post("/v1/runs", json={**body, "run_id": chosen_id})
        by_id_again = await http.post("/v1/runs", json={**body, "run_id": chosen_id})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other_body.status_code == 409
    assert (by_id.status_code, by_id_again.status_code) == (202, 200)
    assert by_id.json()["id"] == by_id_again.json()["id"] == chosen_id
    runs = (await http.get("/v1/runs")).json()["items"]
    assert sorted(run["id"] for run in runs) == sorted([first.json()["id"], chosen_id])
    pool = gateway.app.state.deps.pool
    published = await pool.fetchval(
        "SELECT count(*) FROM runs.outbox WHERE key = ANY($1::text[])",
        [first.json()["id"], chosen_id],
    )
    assert published == 2  # one request per run, not per POST


async def test_a_run_produced_straight_to_kafka_appears_in_the_api(
    gateway: GatewayHandle, worker: WorkerFactory, client: RunClient, tenant: str
) -> None:
    began = datetime.now(UTC)
    # The request's tenant and category travel on its events: the run is filed under them.
    async with api(gateway, tenant) as http, api(gateway, "someone-else") as other, worker():
        request = await client.submit(
            "echo", {"name": "k", "count": 3, "token": SECRET}, tenant=tenant
        )
        run = await wait_state(http, str(request.run_id), "succeeded", "failed")
        listed = (await http.get("/v1/runs", params={"created_after": began.isoformat()})).json()
        hidden = await other.get(f"/v1/runs/{request.run_id}")
    assert run["state"] == "succeeded"
    assert run["category"] == "test"
    assert run["action"] == "echo" and run["plugin"] == "testkit"
    assert run["params"] == {"name": "k", "count": 3, "token": "**********"}
    assert str(request.run_id) in {item["id"] for item in listed["items"]}
    assert hidden.status_code == 404


# -- Kafka down ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def durable_broker(
    sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> AsyncIterator[TansuBroker]:
    """A broker of the test's own that keeps its log in S3, so it can stop and come back with
    its topics and offsets, as a real Kafka cluster does (the session broker is shared)."""
    async with contextlib.AsyncExitStack() as stack:
        if sandbox.s3 is not None:
            endpoint = sandbox.s3.endpoint_url
        else:  # an external S3: Tansu gets moto's credentials, so it needs a moto of its own
            from runmesh.sandbox import MotoS3Server

            moto = MotoS3Server(tmp_path / "moto")
            stack.push_async_callback(moto.stop)
            await moto.start()
            endpoint = moto.endpoint_url
        bucket = f"tansu-{uuid.uuid4().hex[:12]}"
        await ensure_bucket(endpoint, bucket)
        broker = TansuBroker(
            tmp_path / "broker",
            broker_bin=settings.broker_bin,
            storage_engine=f"s3://{bucket}/",
            s3_endpoint_url=endpoint,
        )
        stack.push_async_callback(broker.stop)
        await broker.start()
        yield broker


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_submissions_are_accepted_while_kafka_is_down_and_run_when_it_returns(
    sandbox: Sandbox, settings: Settings, worker: WorkerFactory, tmp_path: Path, tenant: str
) -> None:
    (tmp_path / "broker").mkdir()
    async with durable_broker(sandbox, settings, tmp_path) as broker:
        own = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        gateway = GatewayHandle(own)
        await gateway.start()
        try:
            async with api(gateway, tenant) as http:
                async with worker(kafka_bootstrap=broker.bootstrap):
                    await wait_for_plugins(http, timeout=60)
                    await eventually(
                        lambda: _ready(gateway), timeout=30, message="gateway never ready"
                    )
                await broker.stop()

                submitted = []
                for count in (1, 2, 3):
                    began = time.monotonic()
                    run = await submit(http, "echo", {"name": "down", "count": count})
                    assert time.monotonic() - began < 2.0, "a submission waited for Kafka"
                    submitted.append(run["id"])
                for run_id in submitted:
                    assert (await http.get(f"/v1/runs/{run_id}")).json()["state"] == "queued"
                await eventually(
                    lambda: _not_ready(gateway), timeout=30, message="readyz stayed 200"
                )
                # Stored, not sent: with no live worker (it cannot announce itself while Kafka
                # is away) they wait held; the relay's own retries are test_gateway_outbox's.
                unsent = await gateway.app.state.deps.pool.fetchval(
                    "SELECT count(*) FROM runs.outbox"
                    " WHERE key = ANY($1::text[]) AND sent_at IS NULL",
                    submitted,
                )
                assert unsent == len(submitted)

                await broker.start()
                async with worker(kafka_bootstrap=broker.bootstrap):
                    for run_id in submitted:
                        run = await wait_state(http, run_id, "succeeded", "failed", timeout=90)
                        assert run["state"] == "succeeded", run
        finally:
            await gateway.stop()


async def _ready(gateway: GatewayHandle) -> bool:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        return (await http.get("/readyz")).status_code == 200


async def _not_ready(gateway: GatewayHandle) -> bool:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.get("/readyz")
    if response.status_code != 503:
        return False
    assert response.json()["checks"] == {"postgres": "ok", "kafka": "unreachable"}
    return True


# -- cancel and rerun ------------------------------------------------------------------------


async def test_cancelling_a_queued_run_ends_it_at_once(
    http: httpx.AsyncClient, worker: WorkerFactory, gateway: GatewayHandle
) -> None:
    async with announced(worker, http):
        pass
    run = await submit(http, "sleep", {"seconds": 1, "steps": 10})
    response = await http.post(f"/v1/runs/{run['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["finished_at"] is not None and cancelled["error"] is None
    again = await http.post(f"/v1/runs/{run['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["state"] == "cancelled"

    pool = gateway.app.state.deps.pool
    async with worker():
        # The CancelRun went out for a worker that may hold the request already.
        await _wait_outbox_sent(pool, run["id"], "control")
        later = await submit(http, "noop")
        await wait_state(http, later["id"], "succeeded")
    after = (await http.get(f"/v1/runs/{run['id']}")).json()
    assert after["state"] == "cancelled"  # terminal is final, whatever a worker reports


async def _wait_outbox_sent(pool: Any, run_id: str, topic_suffix: str) -> Any:
    async def sent() -> Any:
        return await pool.fetchval(
            "SELECT sent_at FROM runs.outbox WHERE key = $1 AND topic LIKE $2",
            run_id,
            f"%.{topic_suffix}",
        )

    return await eventually(sent, timeout=20, message=f"{topic_suffix} record never sent")


async def test_a_run_is_named_by_a_unique_prefix_of_its_id_like_git(
    http: httpx.AsyncClient, worker: WorkerFactory, gateway: GatewayHandle, tenant: str
) -> None:
    async with announced(worker, http):
        pass
    run = await submit(http, "noop")
    short = run["id"][:8]  # what the CLI, the demo and the dashboard show

    assert (await http.get(f"/v1/runs/{short}")).json()["id"] == run["id"]
    assert (await http.get(f"/v1/runs/{short.upper()}/logs")).status_code == 200
    stored = await http.get(f"/v1/runs/{short}/events", headers={"Accept": "application/json"})
    assert stored.status_code == 200, stored.text
    cancelled = await http.post(f"/v1/runs/{short}/cancel")
    assert (cancelled.status_code, cancelled.json()["id"]) == (200, run["id"])

    # Two runs of the tenant share the first 8 digits: 8 are ambiguous, 9 are not.
    twins = [
        uuid.UUID("abcdef01-1111-4000-8000-000000000001"),
        uuid.UUID("abcdef01-2222-4000-8000-000000000001"),
    ]
    async with gateway.app.state.deps.pool.acquire() as conn:
        await runs_store.insert_kafka_runs(
            conn, {twin: (tenant, "test") for twin in twins}, gateway.settings.topic_prefix
        )
    ambiguous = await http.get("/v1/runs/abcdef01")
    assert ambiguous.status_code == 422
    assert "ambiguous" in ambiguous.json()["detail"]
    assert (await http.get("/v1/runs/abcdef012")).json()["id"] == str(twins[1])
    assert (await http.get("/v1/runs/abcdef01-1")).json()["id"] == str(twins[0])

    unknown = await http.get("/v1/runs/0000ffff")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no run id starts with 0000ffff"
    for invalid in ("zzzz", "abc"):
        answer = await http.get(f"/v1/runs/{invalid}")
        assert answer.status_code == 422, (invalid, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    async with api(gateway, f"other-{uuid.uuid4().hex[:6]}") as other:
        assert (await other.get(f"/v1/runs/{short}")).status_code == 404


async def test_cancelling_a_running_run_stops_it_through_its_worker(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with worker():
        await wait_for_plugins(http)
        run = await submit(http, "sleep", {"seconds": 30, "steps": 300})
        await wait_state(http, run["id"], "running")
        began = time.monotonic()
        response = await http.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "enough"})
        assert response.status_code == 202, response.text
        assert response.json()["state"] == "running"
        ended = await wait_state(http, run["id"], "cancelled", "succeeded", "failed", timeout=15)
    assert ended["state"] == "cancelled"
    # The worker confirmed it long before the gateway's cancel timeout (30 s) would have.
    assert time.monotonic() - began < 10
    logs = (await http.get(f"/v1/runs/{run['id']}/logs")).json()["items"]
    assert logs is not None
    assert (await http.post(f"/v1/runs/{run['id']}/cancel")).status_code == 409


async def test_a_cancel_no_worker_confirms_ends_the_run_after_the_cancel_timeout(
    settings: Settings, worker_process: Callable[[], WorkerProcess], tenant: str
) -> None:
    gateway = GatewayHandle(settings.model_copy(update={"cancel_timeout_s": 1.0}))
    await gateway.start()
    try:
        async with api(gateway, tenant) as http:
            process = worker_process()
            await process.wait_ready()
            await wait_for_plugins(http)
            run = await submit(http, "sleep", {"seconds": 60, "steps": 600})
            await wait_state(http, run["id"], "running")
            process.signal(signal.SIGKILL)  # the owner is gone: nobody will confirm
            await process.wait_exit(timeout=10)
            began = time.monotonic()
            assert (await http.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
            ended = await wait_state(http, run["id"], "cancelled", timeout=10)
            waited = time.monotonic() - began
    finally:
        await gateway.stop()
    assert 0.9 <= waited < 5, waited
    assert ended["finished_at"] is not None and ended["error"] is None


async def test_rerun_makes_a_new_run_with_the_same_params_and_a_parent(
    http: httpx.AsyncClient, worker: WorkerFactory, gateway: GatewayHandle
) -> None:
    params = {"name": "again", "count": 4, "token": SECRET}
    async with worker():
        await wait_for_plugins(http)
        original = await submit(
            http, "echo", params, timeout_s=60, max_attempts=2, retry_backoff_s=0.5
        )
        await wait_state(http, original["id"], "succeeded")
        too_many = await http.post(
            "/v1/runs",
            json={"category": "test", "action": "echo", "params": params, "max_attempts": 101},
        )
        assert too_many.status_code == 422 and too_many.json()["errors"][0]["loc"] == [
            "body",
            "max_attempts",
        ]
        response = await http.post(f"/v1/runs/{original['id']}/rerun")
        assert response.status_code == 202, response.text
        rerun = response.json()
        done = await wait_state(http, rerun["id"], "succeeded", "failed")
    assert rerun["id"] != original["id"]
    assert rerun["parent_run_id"] == original["id"]
    assert (rerun["category"], rerun["action"]) == ("test", "echo")
    assert done["state"] == "succeeded"
    assert done["result"] == {"name": "again", "count": 4}
    stored = await gateway.app.state.deps.pool.fetchrow(
        "SELECT params, timeout_s, max_attempts, retry_backoff_s FROM runs.runs WHERE id = $1",
        uuid.UUID(rerun["id"]),
    )
    assert stored["params"] == params  # secrets included: the gateway kept the raw params
    policy = (stored["timeout_s"], stored["max_attempts"], stored["retry_backoff_s"])
    assert policy == (60, 2, 0.5)  # its policy too
    children = (await http.get("/v1/runs", params={"parent_run_id": original["id"]})).json()
    assert [item["id"] for item in children["items"]] == [rerun["id"]]
    missing = await http.post(f"/v1/runs/{uuid.uuid4()}/rerun")
    assert missing.status_code == 404


async def test_a_kafka_run_that_failed_before_it_started_cannot_be_rerun(
    http: httpx.AsyncClient, client: RunClient, tenant: str, worker: WorkerFactory
) -> None:
    async with worker():
        request = await client.submit("no-such-action", tenant=tenant)
        failed = await wait_state(http, str(request.run_id), "failed")
    response = await http.post(f"/v1/runs/{failed['id']}/rerun")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "submit it again" in response.json()["detail"]


# -- auth and tenancy ------------------------------------------------------------------------


async def test_requests_without_a_valid_token_are_401(gateway: GatewayHandle) -> None:
    run_path = f"/v1/runs/{uuid.uuid4()}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anonymous:
        for method, path in [
            ("GET", "/v1/runs"),
            ("POST", "/v1/runs"),
            ("GET", run_path),
            ("GET", f"{run_path}/logs"),
            ("GET", f"{run_path}/metrics"),
            ("POST", f"{run_path}/cancel"),
            ("POST", f"{run_path}/rerun"),
            ("GET", "/v1/plugins"),
        ]:
            missing = await anonymous.request(method, path)
            bad = await anonymous.request(
                method, path, headers={"Authorization": "Bearer rmt_not-a-token"}
            )
            basic = await anonymous.request(
                method, path, headers={"Authorization": "Basic dXNlcjpwdw=="}
            )
            for response in (missing, bad, basic):
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.headers["www-authenticate"] == "Bearer"
        assert (await anonymous.get("/healthz")).status_code == 200
        # The API documentation knows the scheme, so its "Authorize" button works.
        spec = (await anonymous.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert spec["paths"]["/v1/runs"]["post"]["security"] == [{"HTTPBearer": []}]


async def test_another_tenants_run_is_not_found_and_not_listed(
    gateway: GatewayHandle, http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        run = await submit(http, "noop")
    async with api(gateway, f"other-{uuid.uuid4().hex[:8]}") as other:
        for method, suffix in [
            ("GET", ""),
            ("GET", "/logs"),
            ("GET", "/metrics"),
            ("POST", "/cancel"),
            ("POST", "/rerun"),
        ]:
            response = await other.request(method, f"/v1/runs/{run['id']}{suffix}")
            assert response.status_code == 404, (method, suffix, response.text)
        assert (await other.get("/v1/runs")).json()["items"] == []
        child = await other.post(
            "/v1/runs",
            json={"category": "test", "action": "noop", "parent_run_id": run["id"]},
        )
        assert child.status_code == 422  # the parent is not theirs to name
    mine = (await http.get("/v1/runs")).json()["items"]
    assert [item["id"] for item in mine] == [run["id"]]
    assert (await http.get(f"/v1/runs/{run['id']}")).json()["state"] == "queued"


# -- logs, metrics, lists --------------------------------------------------------------------


async def test_logs_and_metrics_of_a_run(http: httpx.AsyncClient, worker: WorkerFactory) -> None:
    async with worker():
        await wait_for_plugins(http)
        run = await submit(http, "echo", {"name": "ada", "count": 7})
        await wait_state(http, run["id"], "succeeded")

    logs = (await http.get(f"/v1/runs/{run['id']}/logs")).json()
    messages = [item["message"] for item in logs["items"]]
    assert "hello ada" in messages and "echoed 7 times" in messages
    assert logs["has_more"] is False
    done = [item for item in logs["items"] if item["code"] == "ECHO_DONE"]
    assert done and done[0]["level"] == "success"
    success = (await http.get(f"/v1/runs/{run['id']}/logs", params={"level": "success"})).json()
    assert [item["message"] for item in success["items"]] == ["echoed 7 times"]
    paged: list[int] = []
    after = 0
    while True:
        page = (
            await http.get(f"/v1/runs/{run['id']}/logs", params={"after": after, "limit": 1})
        ).json()
        paged += [item["id"] for item in page["items"]]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert paged == [item["id"] for item in logs["items"]]
    assert paged == sorted(set(paged))

    metrics = (await http.get(f"/v1/runs/{run['id']}/metrics")).json()
    assert metrics["latest"] == {"echo": {"count": 7.0}}
    points = metrics["series"]["echo"]["count"]
    assert [(p["step"], p["value"], p["attempt"]) for p in points] == [(1, 7.0, 1)]
    assert metrics["truncated"] is False


async def test_cursor_pagination_walks_every_run_once_newest_first(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        created = [(await submit(http, "noop"))["id"] for _ in range(7)]
        created.append((await submit(http, "sleep", {"seconds": 1}))["id"])
    walked: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/v1/runs", params=params)).json()
        walked += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert walked == list(reversed(created))  # newest first, no duplicate, no gap
    sleeps = (await http.get("/v1/runs", params={"action": "sleep"})).json()["items"]
    assert [item["id"] for item in sleeps] == [created[-1]]
    by_state = await http.get("/v1/runs", params={"state": ["queued", "running"], "limit": 200})
    assert len(by_state.json()["items"]) == 8
    none = await http.get("/v1/runs", params={"state": "succeeded", "plugin": "testkit"})
    assert none.json() == {"items": [], "next_cursor": None}
    # Submitted without a plugin, the runs are the category's default plugin's, as shown.
    by_plugin = (await http.get("/v1/runs", params={"plugin": "testkit", "limit": 200})).json()
    assert {item["plugin"] for item in by_plugin["items"]} == {"testkit"}
    assert len(by_plugin["items"]) == 8
    other = await http.get("/v1/runs", params={"plugin": "no-such-plugin"})
    assert other.json()["items"] == []
    future = await http.get("/v1/runs", params={"created_after": "2999-01-01T00:00:00Z"})
    assert future.json()["items"] == []
    assert (await http.get("/v1/runs", params={"cursor": "garbage!"})).status_code == 422
    assert (await http.get("/v1/runs", params={"limit": 201})).status_code == 422


async def test_plugins_are_listed_with_their_params_schemas(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        listed = (await http.get("/v1/plugins", params={"category": "test"})).json()["items"]
        detail = (await http.get("/v1/plugins/testkit")).json()
        missing = await http.get("/v1/plugins/no-such-plugin")
    testkit = next(plugin for plugin in listed if plugin["code"] == "testkit")
    assert testkit["latest_version"] == "1.0.0"
    assert {"echo", "sleep", "noop"} <= set(testkit["actions"])
    echo = detail["versions"][-1]["actions"]["echo"]
    assert echo["method"] == "task"
    assert set(echo["params_schema"]["required"]) == {"name", "count"}
    assert echo["progress_categories"]["echo"]["proportion"] == 100
    assert missing.status_code == 404


async def test_the_plugin_list_pages_like_every_list(
    http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        whole = (await http.get("/v1/plugins", params={"limit": 1})).json()

        async def after(category: str, code: str) -> list[str]:
            cursor = encode_key_cursor(category, code)  # what next_cursor after that plugin is
            page = (await http.get("/v1/plugins", params={"cursor": cursor})).json()
            return [plugin["code"] for plugin in page["items"]]

        following_a = await after("test", "a")
        following_testkit = await after("test", "testkit")
        bad = await http.get("/v1/plugins", params={"cursor": "not-a-cursor"})
    assert [plugin["code"] for plugin in whole["items"]] == ["testkit"]
    assert whole["next_cursor"] is None  # the only one (of this tenant and its workers)
    assert following_a == ["testkit"] and following_testkit == []
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "cursor"]


# -- operations ------------------------------------------------------------------------------


async def test_health_readiness_metrics_and_openapi(
    gateway: GatewayHandle, http: httpx.AsyncClient, worker: WorkerFactory
) -> None:
    async with announced(worker, http):
        await submit(http, "noop")
    await eventually(lambda: _ready(gateway), timeout=30, message="gateway never ready")
    failures = [ConnectionResetError("reset by peer")]

    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    # A request-level retry anywhere in the gateway's process is counted in its /metrics.
    assert await retried("test.probe", flaky, on=OSError, attempts=2, wait_initial_s=0) == "ok"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anonymous:
        ready = (await anonymous.get("/readyz")).json()
        metrics = await anonymous.get("/metrics")
        openapi = (await anonymous.get("/openapi.json")).json()
        docs = await anonymous.get("/docs")
    assert ready == {"status": "ready", "checks": {"postgres": "ok", "kafka": "ok"}}
    assert metrics.status_code == 200
    text = metrics.text
    assert 'runmesh_gateway_runs_submitted_total{category="other"} 1.0' in text
    assert (
        'runmesh_gateway_http_requests_total{method="POST",route="/v1/runs",status="202"} 1.0'
        in text
    )
    assert 'route="/v1/plugins",status="200"' in text
    assert "runmesh_gateway_http_request_duration_seconds_bucket" in text
    assert "runmesh_gateway_outbox_pending" in text
    assert 'runmesh_retries_total{error="ConnectionResetError",operation="test.probe"} 1.0' in text
    assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/cancel", "/v1/plugins"} <= set(
        openapi["paths"]
    )
    submit_doc = openapi["paths"]["/v1/runs"]["post"]
    assert {"200", "202", "401", "422"} <= set(submit_doc["responses"])
    assert docs.status_code == 200
