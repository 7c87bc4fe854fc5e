"""to_task with a model (`inference`), its filters, and a killed worker: real broker,
PostgreSQL and moto S3; the model is trained by the train service in the same test."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import DataCollectionCreate, ProjectCreate
from runmesh.catalog.repository import NewDataUnit
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.storage import platform_storage
from runmesh.to_task import BUILTIN_PLUGIN as TO_TASK_PLUGIN
from runmesh.train import BUILTIN_PLUGIN as TRAIN_PLUGIN
from runmesh.train.model import encode_png, make_synthetic_image

from .conftest import GatewayHandle, RunClient, ServiceProcesses, own_database, service_worker
from .test_to_task import params_for, seed
from .test_train import CLASSES, coco_dataset, train_params


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of the module's tests' own: the train plugin their gateway learns stays out
    of the plugin lists other tests count."""
    async with own_database(settings) as own:
        yield own


@pytest.fixture
def tenant() -> str:
    return f"ti-{uuid.uuid4().hex[:8]}"


async def shapes_project(
    pool: asyncpg.Pool, settings: Settings, tenant: str, count: int
) -> tuple[uuid.UUID, list[int]]:
    """A project over `count` synthetic images; units alternate meta camera a / b."""
    rng = np.random.default_rng(42)
    units = []
    async with platform_storage(settings.s3) as bucket:
        for index in range(count):
            pixels, _ = make_synthetic_image(rng, 64, 64, classes=tuple(CLASSES))
            path = f"{tenant}/shapes/s{index:03d}.png"
            info = await bucket.write_bytes(path, encode_png(pixels))
            files: Any = {
                "image": {"uri": bucket.url(path), "size": info.size, "checksum": info.checksum}
            }
            camera = "a" if index % 2 == 0 else "b"
            units.append(NewDataUnit(f"s{index:03d}", files, {"camera": camera}))
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"shapes-{uuid.uuid4().hex[:6]}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True}
            ],
        }
    )
    async with pool.acquire() as conn:
        col = await repository.create_collection(conn, tenant, collection)
        unit_ids = await repository.upsert_data_units(conn, tenant, col.id, None, units)
        project = await annotation.create_project(
            conn,
            tenant,
            ProjectCreate(
                name=f"shapes-{uuid.uuid4().hex[:6]}",
                data_collection_id=col.id,
                annotation_type="image_detection",
                label_schema={"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]},  # type: ignore[arg-type]
            ),
        )
    return project.id, unit_ids


async def test_inference_pre_annotates_with_scores_above_the_threshold(
    settings: Settings, pool: asyncpg.Pool, gateway: GatewayHandle, tenant: str
) -> None:
    project, unit_ids = await shapes_project(pool, settings, tenant, 8)
    trains = RunClient(settings, category="neural_net")
    to_tasks = RunClient(settings, category="pre_annotation")
    await trains.start()
    await to_tasks.start()
    try:
        async with (
            service_worker(settings, "neural_net", TRAIN_PLUGIN, service="train"),
            service_worker(settings, "pre_annotation", TO_TASK_PLUGIN, service="to_task"),
        ):
            uri = await coco_dataset(settings, 40, seed=11, tenant=tenant)
            trained = await trains.submit(
                "train", train_params(uri, f"m-{tenant}", epochs=8), tenant=tenant
            )
            done = await trains.wait_terminal(trained.run_id, timeout=120)
            assert done.type == "run.succeeded", done
            model = done.payload.result["model_id"]  # type: ignore[attr-defined]

            # Only camera "a": half of the units; the Synapse alias `pre_annotation` runs it.
            first = await to_tasks.submit(
                "pre_annotation",
                {
                    "name": "predict",
                    "project": str(project),
                    "method": "inference",
                    "model": model,
                    "confidence_threshold": 0.5,
                    "task_filters": {"meta": {"camera": "a"}},
                },
                tenant=tenant,
            )
            terminal = await to_tasks.wait_terminal(first.run_id, timeout=120)
            assert terminal.type == "run.succeeded", terminal
            result = terminal.payload.result  # type: ignore[attr-defined]
            assert result["tasks_created"] == 4 and result["annotated"] == 4, result
            assert result["failed"] == []

            # The gateway shows the pre-annotations and filters tasks by the annotating run.
            token = await gateway.token(tenant)
            async with httpx.AsyncClient(
                base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}
            ) as http:
                response = await http.get(
                    f"/v1/projects/{project}/tasks",
                    params={"annotated_by_run_id": str(first.run_id)},
                )
                assert response.status_code == 200, response.text
                tasks = response.json()["items"]
                everything = (await http.get(f"/v1/projects/{project}/tasks")).json()["items"]
                missing = await http.get(f"/v1/projects/{uuid.uuid4()}/tasks")
            assert missing.status_code == 404
            assert len(tasks) == 4 and len(everything) == 4
            assert {t["data_unit_id"] for t in tasks} == set(unit_ids[0::2])
            scores = [a["score"] for t in tasks for a in t["data"]["images"][0]["annotations"]]
            assert scores and min(scores) >= 0.5
            assert all(t["annotated_by_run_id"] == str(first.run_id) for t in tasks)

            # A higher threshold, overwriting: never more boxes, every score above it.
            second = await to_tasks.submit(
                "to_task",
                {
                    "name": "predict strictly",
                    "project": str(project),
                    "method": "inference",
                    "model": model,
                    "confidence_threshold": 0.97,
                    "overwrite": True,
                    "task_filters": {"meta": {"camera": "a"}},
                },
                tenant=tenant,
            )
            terminal = await to_tasks.wait_terminal(second.run_id, timeout=120)
            assert terminal.type == "run.succeeded", terminal
            rows = await annotation.list_tasks(
                pool, tenant, project_id=project, annotated_by_run_id=second.run_id
            )
            strict = [a["score"] for r in rows for a in r.data["images"][0]["annotations"]]  # type: ignore[index]
            assert len(rows) == 4
            assert len(strict) <= len(scores) and all(s >= 0.97 for s in strict)
            # The model's inference runs were children of the to_task runs.
            children = [
                run_id
                for run_id, events in trains.events.items()
                if any(
                    e.type == "run.started" and e.payload.action == "inference"  # type: ignore[attr-defined]
                    for e in events
                )
            ]
            assert len(children) == 2

            # A model with classes the project lacks is refused before anything runs.
            unknown = await to_tasks.submit(
                "to_task",
                {
                    "name": "x",
                    "project": str(project),
                    "method": "inference",
                    "model": str(uuid.uuid4()),
                },
                tenant=tenant,
            )
            refused = await to_tasks.wait_terminal(unknown.run_id, timeout=60)
            assert refused.type == "run.failed"
            assert "not found" in refused.payload.message  # type: ignore[attr-defined]
    finally:
        await trains.stop()
        await to_tasks.stop()


async def test_created_range_filter_selects_nothing_in_the_future(
    settings: Settings, pool: asyncpg.Pool, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, settings, tenant, "coco", 3, tmp_path)
    client = RunClient(settings, category="pre_annotation")
    await client.start()
    try:
        async with service_worker(settings, "pre_annotation", TO_TASK_PLUGIN, service="to_task"):
            request = await client.submit(
                "to_task",
                params_for(seeded, task_filters={"created_after": "2999-01-01T00:00:00Z"}),
                tenant=tenant,
            )
            terminal = await client.wait_terminal(request.run_id, timeout=60)
    finally:
        await client.stop()
    assert terminal.type == "run.failed"
    assert "no data unit" in terminal.payload.message  # type: ignore[attr-defined]


async def test_a_killed_worker_s_attempt_2_creates_no_duplicate_tasks(
    settings: Settings, pool: asyncpg.Pool, tenant: str, tmp_path: Path
) -> None:
    count = 300
    seeded = await seed(pool, settings, tenant, "coco", count, tmp_path)
    client = RunClient(settings, category="pre_annotation")
    await client.start()
    with ServiceProcesses(settings, "runmesh.to_task", tmp_path) as services:
        first = services.start()
        try:
            request = await client.submit(
                "to_task", params_for(seeded, max_concurrency=1, batch_size=10), tenant=tenant
            )

            def annotating() -> bool:
                return any(
                    e.type == "run.progress" and e.payload.current >= 20  # type: ignore[attr-defined]
                    for e in client.events[request.run_id]
                )

            await eventually(annotating, timeout=120, message="no progress")
            first.send_signal(signal.SIGKILL)
            first.wait()
            services.start()
            terminal = await client.wait_terminal(request.run_id, timeout=240)
        finally:
            await client.stop()
    assert terminal.type == "run.succeeded", (terminal, services.log_tail(1))
    assert terminal.attempt == 2
    rows = await annotation.list_tasks(pool, tenant, project_id=seeded.project, limit=1000)
    assert len(rows) == count
    assert len({row.data_unit_id for row in rows}) == count
    assert sum(row.data is not None for row in rows) == count - 2  # the unknown and corrupt
