"""The train service end to end: real broker, PostgreSQL and moto S3. The dataset is a COCO
folder of synthetic images (coloured shapes) in the platform bucket: learnable, seeded."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import optuna
import orjson
import pytest

from runmesh.catalog import trained_models
from runmesh.core.events import RunArtifact, RunMetric
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.storage import platform_storage
from runmesh.train import BUILTIN_PLUGIN
from runmesh.train import study as studies
from runmesh.train.dataset import Sample
from runmesh.train.model import Detector, coco_files, synthetic_images
from runmesh.train.params import Hyperparameters
from runmesh.train.trainer import new_detector, prepare, train_epochs

from .conftest import GatewayHandle, RunClient, ServiceProcesses, service_worker

CATEGORY = "neural_net"
CLASSES = ["red_square", "green_circle", "blue_triangle"]
SIZE = 64


@pytest.fixture
def tenant() -> str:
    return f"tr-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def runs(settings: Settings) -> AsyncIterator[RunClient]:
    client = RunClient(settings, category=CATEGORY)
    await client.start()
    yield client
    await client.stop()


def train_worker(settings: Settings, **overrides: Any) -> Any:
    return service_worker(settings, CATEGORY, BUILTIN_PLUGIN, service="train", **overrides)


def synthetic(count: int, seed: int) -> list[tuple[np.ndarray, list[tuple[str, Any]]]]:
    return synthetic_images(count, seed=seed, size=SIZE, classes=CLASSES)


async def coco_dataset(settings: Settings, count: int, seed: int, *, tenant: str) -> str:
    """A COCO folder (annotations.json + images/) in the tenant's folder of the platform
    bucket (what a run of the tenant may read); its URI."""
    prefix = f"{tenant}/datasets/{uuid.uuid4().hex[:10]}"
    async with platform_storage(settings.s3) as storage:
        for path, data in coco_files(synthetic(count, seed), CLASSES):
            await storage.write_bytes(f"{prefix}/{path}", data)
    return f"s3://{settings.s3_bucket}/{prefix}"


def train_params(uri: str, name: str, **hyper: Any) -> dict[str, Any]:
    hyperparameters = {"epochs": 8, "learning_rate": 0.003, "negatives_per_image": 6} | hyper
    return {
        "name": name,
        "dataset": {"uri": uri},
        "hyperparameters": hyperparameters,
        "validation_split": 0.25,
        "seed": 7,
    }


def metrics(client: RunClient, run_id: uuid.UUID, category: str) -> list[RunMetric]:
    return [
        e
        for e in client.events[run_id]
        if isinstance(e, RunMetric) and e.payload.category == category
    ]


async def test_train_learns_checkpoints_registers_and_serves_test_and_inference(
    settings: Settings,
    pool: asyncpg.Pool,
    runs: RunClient,
    gateway: GatewayHandle,
    tenant: str,
) -> None:
    uri = await coco_dataset(settings, 48, seed=1, tenant=tenant)
    async with train_worker(settings):
        request = await runs.submit(
            "train", train_params(uri, f"shapes-{tenant}", epochs=8), tenant=tenant
        )
        terminal = await runs.wait_terminal(request.run_id, timeout=120)
        assert terminal.type == "run.succeeded", terminal
        result = terminal.payload.result  # type: ignore[attr-defined]

        # Learnt: three classes, so chance is a third; seeded, so the margin is stable.
        assert result["metrics"]["validation_box_accuracy"] >= 0.8, result["metrics"]
        per_epoch = metrics(runs, request.run_id, "train")
        assert [m.payload.step for m in per_epoch] == list(range(1, 9))
        validation = [m for m in metrics(runs, request.run_id, "validation") if m.payload.step]
        assert [m.payload.step for m in validation] == list(range(1, 9))
        artifacts = [e for e in runs.events[request.run_id] if isinstance(e, RunArtifact)]
        names = [a.payload.name for a in artifacts]
        assert names == [f"checkpoint-epoch-{n}" for n in range(1, 8)] + ["model"]
        async with platform_storage(settings.s3) as storage:
            for artifact in artifacts:
                path = artifact.payload.uri.removeprefix(f"s3://{settings.s3_bucket}/")
                assert (await storage.stat(path)).size == artifact.payload.size

        model = await trained_models.get_model(pool, tenant, uuid.UUID(result["model_id"]))
        assert model is not None
        assert model.classes == CLASSES
        assert model.artifact_uri == result["artifact_uri"]
        assert model.metrics == result["metrics"]
        assert model.params["seed"] == 7
        assert model.plugin == "runmesh-train"
        assert model.dataset == {"uri": uri, "format": "auto"}

        # The gateway lists and shows it; another tenant sees nothing.
        token = await gateway.token(tenant)
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            listed = (await http.get("/v1/models")).json()
            assert [m["id"] for m in listed["items"]] == [str(model.id)]
            shown = (await http.get(f"/v1/models/{model.id}")).json()
            assert shown["metrics"] == result["metrics"]
            other = await gateway.token(f"{tenant}-other")
            hidden = await http.get(
                f"/v1/models/{model.id}", headers={"Authorization": f"Bearer {other}"}
            )
            assert hidden.status_code == 404

        # The same name again is refused before any training.
        again = await runs.submit("train", train_params(uri, model.name), tenant=tenant)
        refused = await runs.wait_terminal(again.run_id, timeout=60)
        assert refused.type == "run.failed"
        assert "exists already" in refused.payload.message  # type: ignore[attr-defined]

        # test: detection mAP and per-class AP on a held-out dataset, stored on the model; the
        # classification of ground-truth boxes beside it, its confusion matrix as an artifact.
        held_out = await coco_dataset(settings, 16, seed=99, tenant=tenant)
        test = await runs.submit(
            "test", {"model": str(model.id), "dataset": {"uri": held_out}}, tenant=tenant
        )
        tested = await runs.wait_terminal(test.run_id, timeout=120)
        assert tested.type == "run.succeeded", tested
        report = tested.payload.result["report"]  # type: ignore[attr-defined]
        detection = report["detection"]
        # Learnt to find the shapes, not only to name them; IoU 0.5 is easier than 0.5 to 0.95.
        assert 0.3 <= detection["map_50"] <= 1.0, detection
        assert 0.0 < detection["map"] <= detection["map_50"]
        assert set(detection["per_class_ap"]) == set(CLASSES)
        assert detection["threshold"] == 0.5 and 0.0 < detection["recall"] <= 1.0
        assert report["box_classification"]["accuracy"] >= 0.8
        values = metrics(runs, test.run_id, "test")[-1].payload.values
        assert values["map"] == detection["map"] and values["map_50"] == detection["map_50"]
        assert values["red_square_ap"] == detection["per_class_ap"]["red_square"]
        scored = await trained_models.get_model(pool, tenant, model.id)
        assert scored is not None
        assert scored.metrics["test_map"] == detection["map"]
        assert scored.metrics["test_recall"] == detection["recall"]
        assert scored.metrics["validation_box_accuracy"] == model.metrics["validation_box_accuracy"]

        # inference: predictions with scores, every one at or above the threshold.
        listing = await _images_list(settings, held_out, 16)
        found: dict[float, int] = {}
        for threshold in (0.5, 0.95):
            inference = await runs.submit(
                "inference",
                {
                    "model": str(model.id),
                    "images_uri": listing,
                    "confidence_threshold": threshold,
                },
                tenant=tenant,
            )
            done = await runs.wait_terminal(inference.run_id, timeout=60)
            assert done.type == "run.succeeded", done
            out = done.payload.result  # type: ignore[attr-defined]
            lines = await _read_lines(settings, out["predictions_uri"])
            assert len(lines) == 16 and not any("error" in line for line in lines)
            scores = [d["score"] for line in lines for d in line["detections"]]
            assert scores and min(scores) >= threshold
            assert {d["class_name"] for line in lines for d in line["detections"]} <= set(CLASSES)
            found[threshold] = len(scores)
        assert found[0.95] <= found[0.5]


async def _images_list(settings: Settings, dataset_uri: str, count: int) -> str:
    prefix = dataset_uri.removeprefix(f"s3://{settings.s3_bucket}/")
    lines = [
        orjson.dumps({"key": n, "uri": f"{dataset_uri}/images/img-{n:04d}.png"})
        for n in range(1, count + 1)
    ]
    async with platform_storage(settings.s3) as storage:
        await storage.write_bytes(f"{prefix}/list.jsonl", b"\n".join(lines))
    return f"{dataset_uri}/list.jsonl"


async def _read_lines(settings: Settings, uri: str) -> list[dict[str, Any]]:
    async with platform_storage(settings.s3) as storage:
        path = uri.removeprefix(f"s3://{settings.s3_bucket}/")
        data = await storage.read_bytes(path, max_bytes=50_000_000)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


async def test_invalid_hyperparameters_and_a_missing_dataset_fail_clearly(
    settings: Settings, runs: RunClient, gateway: GatewayHandle, tenant: str
) -> None:
    async with train_worker(settings):
        bad = await runs.submit(
            "train", train_params("s3://runmesh/none", "x", epochs=0), tenant=tenant
        )
        failed = await runs.wait_terminal(bad.run_id, timeout=60)
        assert failed.type == "run.failed"
        assert "epochs" in failed.payload.message  # type: ignore[attr-defined]

        token = await gateway.token(tenant)
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:

            async def rejected() -> httpx.Response | None:
                response = await http.post(
                    "/v1/runs",
                    json={
                        "category": CATEGORY,
                        "action": "train",
                        "params": train_params("s3://runmesh/none", "x", learning_rate=-1),
                    },
                )
                return response if response.status_code == 422 else None

            # 422 once the gateway has the train plugin's published params schema.
            response = await eventually(rejected, timeout=30, message="no 422")
            assert "learning_rate" in response.text

        missing = await runs.submit(
            "train",
            train_params(f"s3://{settings.s3_bucket}/{tenant}/nothing-here", "y"),
            tenant=tenant,
        )
        failed = await runs.wait_terminal(missing.run_id, timeout=60)
        assert failed.type == "run.failed"
        assert "is empty" in failed.payload.message  # type: ignore[attr-defined]


async def test_cancel_stops_training_within_two_seconds(
    settings: Settings, runs: RunClient, tenant: str
) -> None:
    uri = await coco_dataset(settings, 24, seed=3, tenant=tenant)
    async with train_worker(settings):
        request = await runs.submit(
            "train",
            train_params(uri, f"long-{tenant}", epochs=1000, batch_size=1, hidden_units=256),
            tenant=tenant,
        )

        def training() -> bool:
            return len(metrics(runs, request.run_id, "train")) >= 2

        await eventually(training, timeout=60, message="training never began")
        began = asyncio.get_running_loop().time()
        await runs.cancel(request.run_id)
        terminal = await runs.wait_terminal(request.run_id, timeout=30)
        took = asyncio.get_running_loop().time() - began
    assert terminal.type == "run.cancelled", terminal
    assert took < 2.0, f"cancel took {took:.2f}s"


async def test_a_killed_worker_resumes_from_the_last_checkpoint_to_the_same_model(
    settings: Settings, pool: asyncpg.Pool, runs: RunClient, tenant: str, tmp_path: Path
) -> None:
    uri = await coco_dataset(settings, 24, seed=5, tenant=tenant)
    hyper = {"epochs": 40, "batch_size": 2, "hidden_units": 64}
    params = train_params(uri, f"resumed-{tenant}", **hyper)
    with ServiceProcesses(settings, "runmesh.train", tmp_path) as services:
        first = services.start()
        request = await runs.submit("train", params, tenant=tenant)

        def checkpointed() -> bool:
            return any(
                isinstance(e, RunArtifact) and e.payload.name == "checkpoint-epoch-3"
                for e in runs.events[request.run_id]
            )

        await eventually(checkpointed, timeout=120, message="no checkpoint")
        first.send_signal(signal.SIGKILL)
        first.wait()
        services.start()
        terminal = await runs.wait_terminal(request.run_id, timeout=240)
    assert terminal.type == "run.succeeded", (terminal, services.log_tail(1))
    assert terminal.attempt == 2
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert result["first_epoch"] > 3  # epochs 1..3 at least were not run again

    # The same seeded training, uninterrupted, in this process: the same weights.
    model = await trained_models.get_model(pool, tenant, uuid.UUID(result["model_id"]))
    assert model is not None
    async with platform_storage(settings.s3) as storage:
        path = model.artifact_uri.removeprefix(f"s3://{settings.s3_bucket}/")
        resumed = Detector.from_bytes(await storage.read_bytes(path, max_bytes=100_000_000))
    straight = await asyncio.to_thread(_train_straight, params, 24, 5)
    for key, value in straight.network.state().items():
        assert np.array_equal(np.asarray(value), np.asarray(resumed.network.state()[key])), key


def _train_straight(params: dict[str, Any], count: int, seed: int) -> Detector:
    hyper = Hyperparameters.model_validate(params["hyperparameters"])
    samples = [
        Sample(f"/img-{n:04d}.png", pixels, boxes, None)
        for n, (pixels, boxes) in enumerate(synthetic(count, seed), start=1)
    ]
    classes = list(CLASSES)  # the COCO categories' order
    prepared = prepare(
        samples, classes, hyper, validation_split=params["validation_split"], seed=params["seed"]
    )
    detector = new_detector(prepared, classes, hyper, params["seed"])
    train_epochs(
        detector, prepared, hyper, seed=params["seed"], first_epoch=1, on_epoch=lambda *_: None
    )
    return detector


async def test_tune_runs_8_trials_over_2_replicas_in_one_study_and_registers_the_best(
    settings: Settings, pool: asyncpg.Pool, runs: RunClient, tenant: str
) -> None:
    uri = await coco_dataset(settings, 12, seed=2, tenant=tenant)
    params = {
        "name": f"tuned-{tenant}",
        "dataset": {"uri": uri},
        "hyperparameters": {"epochs": 2, "negatives_per_image": 4},
        "search_space": {
            "learning_rate": {"low": 0.001, "high": 0.03, "log": True},
            "hidden_units": {"choices": [16, 32, 64]},
        },
        "n_trials": 8,
        "max_concurrent_trials": 4,
        "seed": 3,
    }
    async with train_worker(settings), train_worker(settings):
        request = await runs.submit("tune", params, tenant=tenant)
        terminal = await runs.wait_terminal(request.run_id, timeout=300)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert sum(result["trials"].values()) == 8, result["trials"]
    assert result["trials"].get("complete", 0) >= 1

    # One study in PostgreSQL holding 8 distinct trials, each run as a run of its own.
    with studies.opened_storage(settings) as rdb:
        study = await asyncio.to_thread(optuna.load_study, study_name=result["study"], storage=rdb)
        trials = study.trials
        best = study.best_trial
    assert sorted(t.number for t in trials) == list(range(8))
    trial_runs = {
        run_id: events
        for run_id, events in runs.events.items()
        if any(e.type == "run.started" and e.payload.action == "tune_trial" for e in events)  # type: ignore[attr-defined]
    }
    assert len(trial_runs) == 8
    # Each trial's per-epoch metrics reached the tune run as trial_<n>.
    relayed = {m.payload.category for m in runs.events[request.run_id] if isinstance(m, RunMetric)}
    assert relayed and all(category.startswith("trial_") for category in relayed)

    model = await trained_models.get_model(pool, tenant, uuid.UUID(result["model_id"]))
    assert model is not None and model.action == "tune"
    assert model.params["trial"] == result["best_trial"] == best.number
    assert model.metrics == best.user_attrs["metrics"]
    assert model.artifact_uri == best.user_attrs["artifact_uri"]
