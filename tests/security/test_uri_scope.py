"""Attack 3: data-unit and dataset URIs were not scoped to the tenant.

Tenant B registered a data unit whose file URI was `s3://runmesh/<A>/<A's collection>/…png`
or `file:///…/dev.json`, made a task of it and exported: the export copied A's image or the
host's dev.json (token, database URL, S3 keys). A train run with `dataset.uri` naming A's
export folder trained on A's data. Every URI is now resolved through the run's tenant's own
storages (and its folders of the platform bucket): the gateway refuses such a unit (422), and
the services refuse such a URI when it was planted straight into the catalog or the params.
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
import orjson

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import (
    STORAGE_CREATE,
    DataCollectionCreate,
    LabelSchema,
    ProjectCreate,
)
from runmesh.catalog.repository import NewDataUnit
from runmesh.core.settings import Settings
from runmesh.dm import parse_dm
from runmesh.export import BUILTIN_PLUGIN as EXPORT_PLUGIN
from runmesh.storage import platform_storage
from runmesh.train import BUILTIN_PLUGIN as TRAIN_PLUGIN
from runmesh.train.model import coco_files, synthetic_images

from ..conftest import GatewayHandle, RunClient, service_worker

SECRET = b'{"token": "rmt_the-dev-token", "s3_secret_access_key": "platform-secret"}'
A_IMAGE = b"\x89PNG A's private image"
CLASSES = ["red_square", "green_circle"]


@contextlib.asynccontextmanager
async def api(gateway: GatewayHandle, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await gateway.token(tenant)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        yield http


async def a_image(settings: Settings, tenant_a: str) -> str:
    """An image of tenant A where upload puts it: `s3://<bucket>/<A>/<collection>/<run>/…`."""
    key = f"{tenant_a}/{uuid.uuid4()}/{uuid.uuid4()}/image/u-0000.png"
    async with platform_storage(settings.s3) as storage:
        await storage.write_bytes(key, A_IMAGE)
    return f"s3://{settings.s3_bucket}/{key}"


def host_secret(tmp_path: Path) -> Path:
    """A file of the worker host that no storage of B holds (a stand-in for dev.json)."""
    path = tmp_path / "host" / "dev.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(SECRET)
    return path


async def file_storage(pool: asyncpg.Pool, tenant: str, root: Path) -> uuid.UUID:
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    storage = STORAGE_CREATE.validate_python(
        {"name": f"s-{uuid.uuid4().hex[:6]}", "provider": "file", "config": {"root": str(root)}}
    )
    async with pool.acquire() as conn:
        return (await repository.create_storage(conn, tenant, storage)).id


async def test_the_gateway_refuses_units_whose_files_lie_outside_the_tenants_storages(
    gateway: GatewayHandle, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    stolen = await a_image(settings, tenant_a)
    secret = host_secret(tmp_path)
    own_root = tmp_path / "b-data"
    await file_storage(pool, tenant_b, own_root)
    spec = {"name": "image", "required": True, "extensions": [".png", ".json"]}
    async with api(gateway, tenant_b) as http:
        created = await http.post(
            "/v1/data-collections", json={"name": "c", "file_specifications": [spec]}
        )
        assert created.status_code == 201, created.text
        path = f"/v1/data-collections/{created.json()['id']}/data-units"
        outside = [
            stolen,
            secret.as_uri(),
            f"{own_root.as_uri()}/../host/dev.json",
            f"s3://{settings.s3_bucket}/plugins/{tenant_a}/x/1.0.0.png",
            f"s3://{settings.s3_bucket}/runs/{tenant_a}/{uuid.uuid4()}/x.png",
        ]
        for uri in outside:
            unit = {"unit_key": "u", "files": {"image": {"uri": uri, "size": 1}}}
            response = await http.post(path, json={"units": [unit]})
            assert response.status_code == 422, (uri, response.text)
            [error] = response.json()["errors"]
            assert error["loc"] == ["body", "units", 0, "files", "image", "uri"], error
            assert "no storage of tenant" in error["msg"] or "invalid storage path" in error["msg"]
        inside = [
            f"s3://{settings.s3_bucket}/{tenant_b}/imported/u.png",
            (own_root / "u.png").as_uri(),
        ]
        for index, uri in enumerate(inside):
            unit = {"unit_key": f"ok{index}", "files": {"image": {"uri": uri, "size": 1}}}
            response = await http.post(path, json={"units": [unit]})
            assert response.status_code == 201, (uri, response.text)
        listed = (await http.get(path)).json()["items"]
    assert [unit["files"]["image"]["uri"] for unit in listed] == inside


async def planted_project(
    pool: asyncpg.Pool, tenant: str, files: dict[str, tuple[str, str]]
) -> uuid.UUID:
    """B's project over units planted straight into the catalog (past the gateway): unit key
    → (file URI, the image's file name in the task's DM)."""
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"col-{uuid.uuid4().hex[:6]}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True}
            ],
        }
    )
    units = [
        NewDataUnit(key, {"image": {"uri": uri, "size": 1, "checksum": None, "media_type": None}})
        for key, (uri, _) in files.items()
    ]
    async with pool.acquire() as conn:
        col = await repository.create_collection(conn, tenant, collection)
        unit_ids = await repository.upsert_data_units(conn, tenant, col.id, None, units)
        project = await annotation.create_project(
            conn,
            tenant,
            ProjectCreate(
                name=f"p-{uuid.uuid4().hex[:6]}",
                data_collection_id=col.id,
                annotation_type="image_detection",
                label_schema=LabelSchema.model_validate({"classes": [{"id": 0, "name": "cat"}]}),
            ),
        )
        created = await annotation.create_tasks(conn, tenant, project.id, unit_ids)
        for task_id, (_, name) in zip(created.task_ids, files.values(), strict=True):
            image = {"file_name": name, "width": 8, "height": 8, "annotations": []}
            await annotation.set_task_data(
                conn, tenant, task_id, parse_dm({"images": [image]}), status="completed"
            )
    return project.id


async def test_an_export_never_copies_files_outside_the_tenants_storages(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    files = {
        "stolen": (await a_image(settings, tenant_a), "u-0000.png"),
        "host": (host_secret(tmp_path).as_uri(), "dev.json"),
    }
    project = await planted_project(pool, tenant_b, files)
    out = tmp_path / "b-exports"
    destination = await file_storage(pool, tenant_b, out)
    exports = RunClient(settings, category="export")
    await exports.start()
    try:
        async with service_worker(settings, "export", EXPORT_PLUGIN, service="export"):
            request = await exports.submit(
                "export",
                {
                    "name": "loot",
                    "storage": str(destination),
                    "target": "task",
                    "filter": {"project": str(project)},
                    "extra_params": {"output_format": "dm"},
                },
                tenant=tenant_b,
            )
            terminal = await exports.wait_terminal(request.run_id, timeout=120)
    finally:
        await exports.stop()
    assert terminal.type == "run.succeeded", terminal  # the annotations export, the files not
    written = [path for path in out.rglob("*") if path.is_file()]
    for path in written:
        data = path.read_bytes()
        assert A_IMAGE not in data and b"rmt_the-dev-token" not in data, path
    [errors_file] = [path for path in written if path.name == "error_file_list.json"]
    refused = orjson.loads(errors_file.read_bytes())["origin_file_name"]
    assert len(refused) == 2, refused
    assert all("no storage of tenant" in reason for _, reason in refused), refused


async def test_a_train_run_cannot_read_another_tenants_dataset(
    settings: Settings, tmp_path: Path
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    # A's export folder on the host, and A's dataset in its folder of the platform bucket.
    folder = tmp_path / "a-exports" / "coco"
    prefix = f"{tenant_a}/datasets/{uuid.uuid4().hex[:8]}"
    async with platform_storage(settings.s3) as storage:
        for path, data in coco_files(
            synthetic_images(8, seed=1, size=32, classes=CLASSES), CLASSES
        ):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
            await storage.write_bytes(f"{prefix}/{path}", data)
    params: dict[str, Any] = {
        "hyperparameters": {"epochs": 1},
        "validation_split": 0.25,
        "seed": 7,
    }
    trains = RunClient(settings, category="neural_net")
    await trains.start()
    try:
        async with service_worker(settings, "neural_net", TRAIN_PLUGIN, service="train"):
            requests = [
                await trains.submit(
                    "train", params | {"name": f"m{i}", "dataset": {"uri": uri}}, tenant=tenant_b
                )
                for i, uri in enumerate([folder.as_uri(), f"s3://{settings.s3_bucket}/{prefix}"])
            ]
            for request in requests:
                terminal = await trains.wait_terminal(request.run_id, timeout=120)
                assert terminal.type == "run.failed", terminal
                message = terminal.payload.message  # type: ignore[attr-defined]
                assert "no storage of tenant" in message, message
    finally:
        await trains.stop()
