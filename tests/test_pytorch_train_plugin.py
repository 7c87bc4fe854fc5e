"""The example PyTorch plugin (examples/pytorch-train-plugin) through the mesh.

torch is not a dependency of runmesh: where it is not installed this module is skipped. Run
it with an interpreter that has torch (the plugin picks CUDA when a GPU is there).
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from runmesh.catalog import trained_models
from runmesh.core.settings import Settings
from runmesh.train import BUILTIN_PLUGIN
from runmesh.train.model import MLP

from .conftest import RunClient, service_worker
from .test_train import coco_dataset, train_params

pytest.importorskip("torch")

PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "pytorch-train-plugin"


def load_torch_network() -> type[MLP]:
    spec = importlib.util.spec_from_file_location("torch_network", PLUGIN / "torch_network.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TorchMLP  # type: ignore[no-any-return]


def test_a_torch_epoch_matches_the_numpy_epoch() -> None:
    """Same weights, same shuffles, same Adam: PyTorch and numpy agree to rounding."""
    torch_mlp = load_torch_network()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
    reference = MLP.create(10, 8, 3, seed=1)
    reference.fit_standardizer(x)
    trained = torch_mlp.of(reference, device="cpu")  # type: ignore[attr-defined]
    for epoch in range(3):
        for network in (reference, trained):
            network.train_epoch(
                x,
                y,
                learning_rate=0.01,
                batch_size=16,
                rng=np.random.default_rng([5, epoch]),
                weight_decay=1e-3,
            )
    for key, value in reference.state().items():
        assert np.allclose(value, trained.state()[key], rtol=1e-9, atol=1e-12), key


async def test_the_example_trains_through_the_mesh_and_the_builtin_serves_its_model(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant = f"pt-{uuid.uuid4().hex[:8]}"
    uri = await coco_dataset(settings, 24, seed=4, tenant=tenant)
    client = RunClient(settings, category="neural_net")
    await client.start()
    try:
        async with service_worker(
            settings,
            "neural_net",
            BUILTIN_PLUGIN,
            service="train",
            plugin_path=[PLUGIN.parent],
            job_memory_mb=8192,  # torch and its training need more than the default 2 GiB
        ):
            request = await client.submit(
                "train", train_params(uri, f"torch-{tenant}"), plugin="pytorch-train", tenant=tenant
            )
            terminal = await client.wait_terminal(request.run_id, timeout=180)
            assert terminal.type == "run.succeeded", terminal
            result = terminal.payload.result  # type: ignore[attr-defined]
            logs = [
                e.payload.message  # type: ignore[attr-defined]
                for e in client.events[request.run_id]
                if e.type == "run.log"
            ]
            assert any(m.startswith("training with PyTorch on ") for m in logs), logs
            assert result["metrics"]["validation_box_accuracy"] >= 0.8, result["metrics"]
            model = await trained_models.get_model(pool, tenant, uuid.UUID(result["model_id"]))
            assert model is not None and model.plugin == "pytorch-train"

            # The built-in test action reads the PyTorch-trained weights.
            held_out = await coco_dataset(settings, 12, seed=98, tenant=tenant)
            test = await client.submit(
                "test", {"model": str(model.id), "dataset": {"uri": held_out}}, tenant=tenant
            )
            tested = await client.wait_terminal(test.run_id, timeout=120)
            assert tested.type == "run.succeeded", tested
            report = tested.payload.result["report"]  # type: ignore[attr-defined]
            assert report["box_classification"]["accuracy"] >= 0.8
            assert report["detection"]["map_50"] >= 0.3
    finally:
        await client.stop()
