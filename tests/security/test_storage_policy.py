"""Attack 4: tenants chose where workers read and write, with the platform's keys.

`POST /v1/storages` took a `file` storage rooted at `/` (upload then read the whole worker
host), an `s3` storage at a loopback or link-local endpoint (requests signed with the
platform's key id went there) and an `http` storage with `allow_private: true` (the SSRF guard
switched off by the tenant). The operator's policy (`RUNMESH_STORAGE_*`) now decides: the
gateway refuses such a storage with a 422 naming the field and the setting, every worker
refuses it again when it opens one (a row planted in the catalog, a request straight on
Kafka), and a tenant's S3 storage is signed with the tenant's own keys, never the platform's.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from runmesh.catalog import repository
from runmesh.catalog.models import STORAGE_CREATE, DataCollectionCreate
from runmesh.core.settings import Settings
from runmesh.storage import StoragePolicy, StoragePolicyError, open_storage, tenant_prefixes
from runmesh.upload import BUILTIN_PLUGIN

from ..conftest import GatewayHandle, RunClient, service_worker


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


def refusal(response: httpx.Response) -> tuple[list[Any], str]:
    """(loc, message) of a policy 422."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    return error["loc"], error["msg"]


async def test_the_gateway_refuses_storages_outside_the_operators_policy(
    gateway: GatewayHandle, settings: Settings, tmp_path: Path
) -> None:
    tenant = f"b-{uuid.uuid4().hex[:8]}"
    (tmp_path / "escape").symlink_to("/")
    (tmp_path / "mine").mkdir()
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"provider": "file", "config": {"root": "/"}}, "root", "RUNMESH_STORAGE_FILE_ROOTS"),
        (
            {"provider": "file", "config": {"root": f"{tmp_path}/../../../../etc"}},
            "root",
            "RUNMESH_STORAGE_FILE_ROOTS",
        ),
        (
            {"provider": "file", "config": {"root": str(tmp_path / "escape" / "etc")}},
            "root",
            "RUNMESH_STORAGE_FILE_ROOTS",
        ),
        (
            {
                "provider": "s3",
                "config": {"bucket": "b-data", "endpoint_url": "http://127.0.0.1:1"},
            },
            "endpoint_url",
            "RUNMESH_STORAGE_S3_ENDPOINTS",
        ),
        (
            {"provider": "s3", "config": {"bucket": "b-data", "endpoint_url": "http://[::1]:1/"}},
            "endpoint_url",
            "RUNMESH_STORAGE_S3_ENDPOINTS",
        ),
        (
            {
                "provider": "s3",
                "config": {"bucket": "latest", "endpoint_url": "http://169.254.169.254"},
            },
            "endpoint_url",
            "RUNMESH_STORAGE_S3_ENDPOINTS",
        ),
        # The platform bucket, outside the tenant's own folder.
        (
            {"provider": "s3", "config": {"bucket": settings.s3_bucket}},
            "prefix",
            "RUNMESH_S3_BUCKET",
        ),
        (
            {"provider": "s3", "config": {"bucket": settings.s3_bucket, "prefix": "default/"}},
            "prefix",
            "RUNMESH_S3_BUCKET",
        ),
        (
            {
                "provider": "http",
                "config": {"base_url": "http://127.0.0.1:9/", "allow_private": True},
            },
            "allow_private",
            "RUNMESH_STORAGE_HTTP_ALLOW_PRIVATE",
        ),
    ]
    async with api(gateway, tenant) as http:
        for body, field, setting in refused:
            response = await http.post("/v1/storages", json={"name": "x"} | body)
            loc, message = refusal(response)
            assert loc == ["body", "config", field], (body, response.text)
            assert setting in message and setting in response.json()["detail"], response.text
        assert (await http.get("/v1/storages")).json()["items"] == []

        # What the policy allows: under an allowed root, AWS, the tenant's own folder.
        allowed = [
            {"provider": "file", "config": {"root": str(tmp_path / "mine")}},
            {
                "provider": "s3",
                "config": {
                    "bucket": "b-data",
                    "endpoint_url": "https://s3.eu-west-1.amazonaws.com",
                },
            },
            {"provider": "s3", "config": {"bucket": settings.s3_bucket, "prefix": f"{tenant}/x"}},
            {"provider": "http", "config": {"base_url": "https://example.com/data/"}},
        ]
        for index, body in enumerate(allowed):
            created = await http.post("/v1/storages", json={"name": f"ok-{index}"} | body)
            assert created.status_code == 201, created.text

    # An operator who allows private hosts for http storages.
    open_gateway = GatewayHandle(settings.model_copy(update={"storage_http_allow_private": True}))
    await open_gateway.start()
    try:
        async with api(open_gateway, tenant) as http:
            body = {"base_url": "http://127.0.0.1:9/", "allow_private": True}
            created = await http.post(
                "/v1/storages", json={"name": "lan", "provider": "http", "config": body}
            )
            assert created.status_code == 201, created.text
    finally:
        await open_gateway.stop()


async def test_s3_credentials_are_stored_but_never_shown(gateway: GatewayHandle) -> None:
    secret = f"tenant-secret-{uuid.uuid4().hex}"
    config = {
        "bucket": "b-data",
        "endpoint_url": "https://s3.us-west-2.amazonaws.com",
        "credentials": {"access_key_id": "AKIATENANTB", "secret_access_key": secret},
    }
    async with api(gateway, f"b-{uuid.uuid4().hex[:8]}") as http:
        created = await http.post(
            "/v1/storages", json={"name": "own-keys", "provider": "s3", "config": config}
        )
        assert created.status_code == 201, created.text
        got = await http.get(f"/v1/storages/{created.json()['id']}")
        listed = await http.get("/v1/storages")
    for response in (created, got, listed):
        assert secret not in response.text
    assert got.json()["config"]["credentials"] == {
        "access_key_id": "AKIATENANTB",
        "secret_access_key": "**********",
    }
    row = await gateway.app.state.deps.pool.fetchval(
        "SELECT config->'credentials'->>'secret_access_key' FROM catalog.storages WHERE id = $1",
        uuid.UUID(created.json()["id"]),
    )
    assert row == secret  # stored for the workers, only there


class Recorder:
    """An HTTP server that answers 404 to everything and keeps each request's headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                self.requests.append(headers)
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


async def test_a_tenants_s3_storage_is_never_signed_with_the_platforms_key(
    settings: Settings,
) -> None:
    platform_key = settings.s3_access_key_id or "no-platform-key"
    async with Recorder() as recorder:
        # Not on the operator's list: refused before any request.
        with pytest.raises(StoragePolicyError, match="RUNMESH_STORAGE_S3_ENDPOINTS"):
            open_storage(
                "s3",
                {"bucket": "b-data", "endpoint_url": recorder.url},
                settings.storage,
                tenant="b",
            )
        assert recorder.requests == []

        listed = settings.model_copy(update={"storage_s3_endpoints": [recorder.url]})
        anonymous = open_storage(
            "s3", {"bucket": "b-data", "endpoint_url": recorder.url}, listed.storage, tenant="b"
        )
        own_keys = open_storage(
            "s3",
            {
                "bucket": "b-data",
                "endpoint_url": recorder.url,
                "credentials": {"access_key_id": "AKIATENANTB", "secret_access_key": "s"},
            },
            listed.storage,
            tenant="b",
        )
        async with anonymous, own_keys:
            assert not await anonymous.exists("u-0000.png")
            unsigned = len(recorder.requests)
            assert not await own_keys.exists("u-0000.png")
    assert unsigned >= 1 and len(recorder.requests) > unsigned
    for headers in recorder.requests[:unsigned]:
        assert "authorization" not in headers, headers
    for headers in recorder.requests[unsigned:]:
        assert "Credential=AKIATENANTB/" in headers["authorization"], headers
    assert all(platform_key not in str(headers) for headers in recorder.requests)


async def plant_storage(pool: asyncpg.Pool, tenant: str, body: dict[str, Any]) -> uuid.UUID:
    """A storage written into the catalog past the gateway (an old row, a bad import)."""
    storage = STORAGE_CREATE.validate_python({"name": f"s-{uuid.uuid4().hex[:6]}"} | body)
    async with pool.acquire() as conn:
        row = await repository.create_storage(conn, tenant, storage)
    return row.id


async def test_workers_refuse_planted_storages_that_break_the_policy(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant = f"b-{uuid.uuid4().hex[:8]}"
    planted = {
        "RUNMESH_STORAGE_FILE_ROOTS": {"provider": "file", "config": {"root": "/"}},
        "RUNMESH_STORAGE_S3_ENDPOINTS": {
            "provider": "s3",
            "config": {"bucket": "b-data", "endpoint_url": "http://169.254.169.254"},
        },
        "RUNMESH_STORAGE_HTTP_ALLOW_PRIVATE": {
            "provider": "http",
            "config": {"base_url": "http://127.0.0.1:9/", "allow_private": True},
        },
    }
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"col-{uuid.uuid4().hex[:6]}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True}
            ],
        }
    )
    async with pool.acquire() as conn:
        collection_id = (await repository.create_collection(conn, tenant, collection)).id
    uploads = RunClient(settings, category="upload")
    await uploads.start()
    try:
        async with service_worker(settings, "upload", BUILTIN_PLUGIN, service="upload"):
            runs = {}
            for setting, body in planted.items():
                storage = await plant_storage(pool, tenant, body)
                params = {
                    "name": f"steal via {setting}",
                    "storage": str(storage),
                    "data_collection": str(collection_id),
                    "path": "etc",
                }
                runs[setting] = await uploads.submit("upload", params, tenant=tenant)
            for setting, request in runs.items():
                terminal = await uploads.wait_terminal(request.run_id, timeout=60)
                assert terminal.type == "run.failed", (setting, terminal)
                payload = terminal.payload
                assert payload.error_type == "StoragePolicyError", (setting, payload)  # type: ignore[attr-defined]
                assert setting in payload.message, (setting, payload)  # type: ignore[attr-defined]
    finally:
        await uploads.stop()


def test_the_policy_reads_tenant_roots_endpoint_patterns_and_reserved_tenant_names(
    settings: Settings, tmp_path: Path
) -> None:
    for tenant in ("acme", "globex"):
        (tmp_path / tenant).mkdir()
    policy = StoragePolicy.from_settings(
        settings.model_copy(
            update={
                "storage_file_roots": [tmp_path / "{tenant}"],
                "storage_s3_endpoints": ["https://s3.*.amazonaws.com", "http://10.0.0.5:9000"],
            }
        ).storage
    )
    assert policy.file_root(tmp_path / "acme" / "raw", "acme") == tmp_path / "acme" / "raw"
    with pytest.raises(StoragePolicyError, match="RUNMESH_STORAGE_FILE_ROOTS"):
        policy.file_root(tmp_path / "globex", "acme")  # another tenant's root
    with pytest.raises(StoragePolicyError):
        policy.file_root(tmp_path / "acme", "../acme")  # a tenant name is no path
    for allowed in ("https://s3.eu-west-1.amazonaws.com", "http://10.0.0.5:9000/"):
        assert not policy.s3(bucket="b-data", prefix="", endpoint_url=allowed, tenant="acme")
    for refused in (
        "https://s3.eu-west-1.amazonaws.com.evil.example",
        "https://evil.example/s3.eu-west-1.amazonaws.com",
        "https://user@s3.eu-west-1.amazonaws.com",
        "http://10.0.0.5:9001",
        "https://10.0.0.5:9000",
    ):
        with pytest.raises(StoragePolicyError, match="RUNMESH_STORAGE_S3_ENDPOINTS"):
            policy.s3(bucket="b-data", prefix="", endpoint_url=refused, tenant="acme")
    # The platform bucket: the tenant's own folders only; the platform's key signs there.
    bucket = settings.s3_bucket
    assert policy.s3(bucket=bucket, prefix="acme/raw", endpoint_url=None, tenant="acme")
    assert policy.s3(bucket=bucket, prefix="runs/acme/", endpoint_url=None, tenant="acme")
    for prefix in ("", "acmex/", "globex/acme", "plugins/acme/", "runs/", "models"):
        with pytest.raises(StoragePolicyError, match="RUNMESH_S3_BUCKET"):
            policy.s3(bucket=bucket, prefix=prefix, endpoint_url=None, tenant="acme")
    # A tenant named like a platform folder owns no bare folder (it would span every tenant's).
    assert tenant_prefixes("models") == ("runs/models/", "models/models/")
    assert tenant_prefixes("a/b") == ()
