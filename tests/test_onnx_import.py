"""Bring your own model (issue 18 item 4): an ONNX detector in the YOLOv8 layout, built in the
test, is imported from the tenant's storage and pre-annotates tasks through to_task's
`inference` method with the boxes it outputs; a file whose outputs do not fit its declared
classes is refused at import. Real broker, PostgreSQL, moto S3 and service processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest

from runmesh.catalog import annotation, trained_models
from runmesh.cli.__main__ import main
from runmesh.core.settings import Settings
from runmesh.storage import platform_storage
from runmesh.to_task import BUILTIN_PLUGIN as TO_TASK_PLUGIN
from runmesh.train import BUILTIN_PLUGIN as TRAIN_PLUGIN

from .conftest import (
    GatewayHandle,
    RunClient,
    own_database,
    service_worker,
    tenant_client,
    until_plugin_known,
)
from .onnx_models import yolo
from .test_to_task_inference import shapes_project
from .test_train import CLASSES

DEADLINE_S = 180.0  # catches a hang: two service processes start and run on a loaded machine


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of the test's own: the train plugin its gateway learns stays out of the
    plugin lists other tests count."""
    async with own_database(settings) as own:
        yield own


@pytest.fixture
def tenant() -> str:
    return f"onnx-{uuid.uuid4().hex[:8]}"


def green_circle_model() -> bytes:
    """A YOLOv8 export over 64 x 64 inputs that sees one green circle at (15, 24, 10 x 12) with
    0.9, the same circle a pixel lower with 0.8 (NMS drops it), and a square with 0.2."""
    rows = np.array(  # cx, cy, w, h, then red_square, green_circle, blue_triangle
        [
            (20, 30, 10, 12, 0.0, 0.9, 0.1),
            (20, 31, 10, 12, 0.0, 0.8, 0.0),
            (50, 50, 8, 8, 0.2, 0, 0),
        ],
        dtype=np.float32,
    )
    return yolo(rows.T[None], size=64)


async def test_an_imported_yolo_model_pre_annotates_tasks_with_its_boxes(
    settings: Settings, pool: asyncpg.Pool, tenant: str
) -> None:
    project, unit_ids = await shapes_project(pool, settings, tenant, 4)  # 64 x 64 images
    async with platform_storage(settings.s3) as bucket:
        await bucket.write_bytes(f"{tenant}/imports/detector.onnx", green_circle_model())
        model_uri = bucket.url(f"{tenant}/imports/detector.onnx")
    nets = RunClient(settings, category="neural_net")
    to_tasks = RunClient(settings, category="pre_annotation")
    await nets.start()
    await to_tasks.start()
    try:
        async with (
            service_worker(settings, "neural_net", TRAIN_PLUGIN, service="train"),
            service_worker(settings, "pre_annotation", TO_TASK_PLUGIN, service="to_task"),
        ):
            imported = await nets.submit(
                "import_model",
                {"name": "shapes-yolo", "uri": model_uri, "layout": "yolov8", "classes": CLASSES},
                tenant=tenant,
            )
            done = await nets.wait_terminal(imported.run_id, timeout=DEADLINE_S)
            assert done.type == "run.succeeded", done
            model_id = done.payload.result["model_id"]  # type: ignore[attr-defined]
            model = await trained_models.get_model(pool, tenant, uuid.UUID(model_id))
            assert model is not None and model.classes == CLASSES
            assert model.params == {"format": "onnx", "layout": "yolov8", "source": model_uri}
            assert model.artifact_uri.endswith(f"/models/{tenant}/{imported.run_id}/model.onnx")

            predicted = await to_tasks.submit(
                "to_task",
                {
                    "name": "yolo",
                    "project": str(project),
                    "method": "inference",
                    "model": model_id,
                    "confidence_threshold": 0.5,
                },
                tenant=tenant,
            )
            terminal = await to_tasks.wait_terminal(predicted.run_id, timeout=DEADLINE_S)
            assert terminal.type == "run.succeeded", terminal
            result = terminal.payload.result  # type: ignore[attr-defined]
            assert result["annotated"] == 4 and result["failed"] == [], result

            rows = await annotation.list_tasks(
                pool, tenant, project_id=project, annotated_by_run_id=predicted.run_id
            )
            assert sorted(row.data_unit_id for row in rows) == sorted(unit_ids)
            for row in rows:
                boxes = row.data["images"][0]["annotations"]  # type: ignore[index]
                assert [(b["class_name"], b["bbox"], b["score"]) for b in boxes] == [
                    ("green_circle", [15.0, 24.0, 10.0, 12.0], pytest.approx(0.9))
                ]

            # Four classes for three class outputs: refused at import, nothing registered.
            wrong = await nets.submit(
                "import_model",
                {
                    "name": "wrong",
                    "uri": model_uri,
                    "layout": "yolov8",
                    "classes": [*CLASSES, "star"],
                },
                tenant=tenant,
            )
            refused = await nets.wait_terminal(wrong.run_id, timeout=DEADLINE_S)
            assert refused.type == "run.failed"
            assert "a yolov8 output is [4 + 4 classes, N]" in refused.payload.message  # type: ignore[attr-defined]
            listed = await trained_models.list_models(pool, tenant, before=None, limit=10)
            assert [m.name for m in listed] == ["shapes-yolo"]
    finally:
        await nets.stop()
        await to_tasks.stop()


async def test_the_cli_imports_through_post_v1_models_and_lists_the_model(
    settings: Settings,
    gateway: GatewayHandle,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with platform_storage(settings.s3) as bucket:
        await bucket.write_bytes(f"{tenant}/imports/detector.onnx", green_circle_model())
        model_uri = bucket.url(f"{tenant}/imports/detector.onnx")
    async with (
        tenant_client(gateway, tenant) as api,
        service_worker(settings, "neural_net", TRAIN_PLUGIN, service="train"),
    ):
        await until_plugin_known(api, "runmesh-train", timeout=DEADLINE_S)
        root = ["--gateway-url", gateway.url, "--token", api.headers["Authorization"][7:]]
        argv = ["model", "import", model_uri, "--name", "cli-yolo", "--layout", "yolov8"]
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*root, *argv, "--classes", ",".join(CLASSES), "-w"])
        assert code == 0, capsys.readouterr()
        listed = (await api.get("/v1/models")).json()["items"]
        assert [(m["name"], m["action"], m["classes"]) for m in listed] == [
            ("cli-yolo", "import_model", CLASSES)
        ]
        capsys.readouterr()
        assert await asyncio.to_thread(main, [*root, "model", "ls"]) == 0
        assert "cli-yolo" in capsys.readouterr().out

        # A layout runmesh cannot read is refused before any run: 422 naming the field.
        bad = await api.post(
            "/v1/models",
            json={"name": "x", "uri": model_uri, "layout": "yolov9", "classes": CLASSES},
        )
        assert bad.status_code == 422, bad.text
        assert any(error["loc"][-1] == "layout" for error in bad.json()["errors"]), bad.json()
        # The same Idempotency-Key answers the run it made.
        body = {"name": "again", "uri": model_uri, "layout": "yolov8", "classes": CLASSES}
        key = {"Idempotency-Key": f"import-{tenant}"}
        first = await api.post("/v1/models", json=body, headers=key)
        second = await api.post("/v1/models", json=body, headers=key)
        assert (first.status_code, second.status_code) == (202, 200)
        assert first.json()["id"] == second.json()["id"]
        assert first.json()["action"] == "import_model"
