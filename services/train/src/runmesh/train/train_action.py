"""`BaseTrain`: the train action: load a dataset, learn per epoch with checkpoints, register.

Synapse's train reports `dataset`, `train` and `model_upload` progress and registers the
model once at the end; this one also checkpoints every `checkpoint_interval` epochs to S3 so
that an attempt after a crash (`resume`) continues from the last checkpoint instead of from
epoch 1, and ends with the same weights as a run that never crashed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from runmesh.catalog import trained_models
from runmesh.catalog.trained_models import NewModel
from runmesh.core.settings import Settings
from runmesh.plugins import Action
from runmesh.storage import TenantUris
from runmesh.train.artifacts import RunArtifacts, load_detector
from runmesh.train.dataset import LoadedDataset, load_dataset
from runmesh.train.errors import DatasetError, ModelNotFoundError, TrainConfigError
from runmesh.train.model import MLP, Detector
from runmesh.train.params import TrainParams
from runmesh.train.registration import register
from runmesh.train.resources import run_resources
from runmesh.train.trainer import (
    EpochReport,
    Prepared,
    evaluate_boxes,
    new_detector,
    prepare,
    train_epochs,
)

log = logging.getLogger(__name__)

LOG_MESSAGES = {
    "TRAIN_STARTED": {"message": "training {!r} on {}", "level": "info"},
    "DATASET_LOADED": {
        "message": "dataset: {} images ({} skipped), classes {}",
        "level": "info",
    },
    "RESUMED": {"message": "resuming after epoch {} from this run's checkpoint", "level": "info"},
    "CHECKPOINT_SAVED": {"message": "checkpoint after epoch {}: {}", "level": "debug"},
    "MODEL_REGISTERED": {"message": "model {} registered: {}", "level": "success"},
    "TRAIN_FAILED": {"message": "training failed: {}", "level": "error"},
}


class BaseTrain(Action[TrainParams]):
    """Trains the built-in detector (`runmesh.train.model`) and registers it."""

    name = "train"
    params_model = TrainParams
    progress_categories: ClassVar = {
        "dataset": {"description": "Loading the dataset", "proportion": 20},
        "train": {"description": "Training, per epoch", "proportion": 75},
        "model_upload": {"description": "Storing and registering the model", "proportion": 5},
    }
    metrics_categories: ClassVar = {
        "train": "Per epoch (step = epoch): loss, accuracy",
        "validation": "Per epoch (step = epoch): loss, accuracy; at the end: macro_f1",
    }
    log_messages: ClassVar = LOG_MESSAGES

    async def start(self) -> dict[str, object]:
        """Train, checkpoint, register; the result names the model and its metrics."""
        params = self.params
        async with run_resources(self.run, "train") as res:
            try:
                return await self._train(
                    params, res.settings, res.tenant, res.pool, res.uris, res.artifacts
                )
            except (DatasetError, ModelNotFoundError, TrainConfigError) as exc:
                self.run.log_message_with_code("TRAIN_FAILED", exc)
                raise

    async def _train(
        self,
        params: TrainParams,
        settings: Settings,
        tenant: str,
        pool: Any,
        uris: TenantUris,
        artifacts: RunArtifacts,
    ) -> dict[str, object]:
        run = self.run
        async with pool.acquire(timeout=30) as conn:
            if await trained_models.name_taken(conn, tenant, params.name, run.run_id):
                raise TrainConfigError(f"name: a model named {params.name!r} exists already")
            base = None
            if params.model is not None:
                base = await trained_models.get_model(conn, tenant, params.model)
                if base is None:
                    raise ModelNotFoundError(f"model: model {params.model} not found")
        run.log_message_with_code("TRAIN_STARTED", params.name, params.dataset.describe())
        run.set_progress(0, 1, category="dataset")
        dataset = await load_dataset(
            params.dataset,
            tenant=tenant,
            settings=settings,
            pool=pool,
            uris=uris,
            progress=lambda done, total: run.set_progress(done, total, category="dataset"),
        )
        run.check_cancelled()
        base_detector = await load_detector(base.artifact_uri, uris) if base is not None else None
        classes = _classes(dataset, base_detector)
        run.log_message_with_code(
            "DATASET_LOADED", len(dataset.samples), len(dataset.skipped), classes
        )
        hyper = params.hyperparameters
        try:
            prepared = await asyncio.to_thread(
                prepare,
                dataset.samples,
                classes,
                hyper,
                validation_split=params.validation_split,
                seed=params.seed,
            )
        except ValueError as exc:
            raise DatasetError(f"dataset: {exc}") from exc
        detector, first_epoch = await self._starting_point(
            params, prepared, classes, base_detector, artifacts
        )
        loop = asyncio.get_running_loop()
        last: list[EpochReport] = []

        def on_epoch(report: EpochReport, current: Detector) -> None:
            # In the training thread: storage calls go back to the loop.
            last[:] = [report]
            run.set_metrics(
                {"loss": report.loss, "accuracy": report.accuracy}, "train", step=report.epoch
            )
            if report.validation_loss is not None and report.validation_accuracy is not None:
                run.set_metrics(
                    {"loss": report.validation_loss, "accuracy": report.validation_accuracy},
                    "validation",
                    step=report.epoch,
                )
            if report.epoch % params.checkpoint_interval == 0 and report.epoch < hyper.epochs:
                stored = asyncio.run_coroutine_threadsafe(
                    artifacts.save_checkpoint(report.epoch, current.to_bytes()), loop
                ).result()
                run.log_artifact(
                    f"checkpoint-epoch-{report.epoch}",
                    stored.uri,
                    size=stored.size,
                    checksum=stored.checksum,
                    media_type="application/x-npz",
                )
                run.log_message_with_code("CHECKPOINT_SAVED", report.epoch, stored.uri)
            run.set_progress(report.epoch, hyper.epochs, category="train")
            run.check_cancelled()

        run.set_progress(first_epoch - 1, hyper.epochs, category="train")
        await asyncio.to_thread(
            train_epochs,
            detector,
            prepared,
            hyper,
            seed=params.seed,
            first_epoch=first_epoch,
            on_epoch=on_epoch,
        )
        report = await asyncio.to_thread(evaluate_boxes, detector, prepared.validation)
        metrics: dict[str, float] = {}
        if last:
            metrics = {"loss": last[0].loss, "accuracy": last[0].accuracy}
            if last[0].validation_accuracy is not None and last[0].validation_loss is not None:
                metrics |= {
                    "validation_loss": last[0].validation_loss,
                    "validation_accuracy": last[0].validation_accuracy,
                }
        if prepared.validation:
            metrics["validation_box_accuracy"] = report["accuracy"]
            metrics["validation_macro_f1"] = report["macro_f1"]
            run.set_metrics({"macro_f1": report["macro_f1"]}, "validation")
        run.set_progress(0, 2, category="model_upload")
        stored = await artifacts.save_model(detector.to_bytes())
        run.log_artifact(
            "model",
            stored.uri,
            size=stored.size,
            checksum=stored.checksum,
            media_type="application/x-npz",
        )
        run.set_progress(1, 2, category="model_upload")
        row = await register(
            pool,
            tenant,
            NewModel(
                name=params.name,
                description=params.description,
                plugin=run.context.plugin,
                plugin_version=run.context.plugin_version,
                action=self.name,
                run_id=run.run_id,
                base_model_id=params.model,
                dataset=params.dataset.describe(),
                classes=detector.classes,
                params=params.model_dump(
                    mode="json", include={"hyperparameters", "seed", "validation_split"}
                ),
                metrics=metrics,
                artifact_uri=stored.uri,
            ),
        )
        run.set_progress(2, 2, category="model_upload")
        run.log_message_with_code("MODEL_REGISTERED", row.id, stored.uri)
        return {
            "model_id": str(row.id),
            "artifact_uri": stored.uri,
            "classes": detector.classes,
            "metrics": metrics,
            "epochs": hyper.epochs,
            "first_epoch": first_epoch,
            "images": {"total": len(dataset.samples), "skipped": len(dataset.skipped)},
        }

    def network(self, network: MLP) -> MLP:
        """Hook: the network to train, given the numpy one (new, the base model's, or this
        run's checkpoint). A plugin returns a subclass that trains elsewhere (a PyTorch one on
        a GPU: examples/pytorch-train-plugin) and keeps the same weights layout, so that
        checkpoints, the registered model and `inference` stay the same."""
        return network

    async def _starting_point(
        self,
        params: TrainParams,
        prepared: Prepared,
        classes: list[str],
        base: Detector | None,
        artifacts: RunArtifacts,
    ) -> tuple[Detector, int]:
        """The detector to train and its first epoch: this run's last checkpoint when
        resuming, else the base model, else a new network."""
        detector: Detector | None = None
        first_epoch = 1
        if params.resume:
            found = await artifacts.last_checkpoint()
            if found is not None:
                epoch, data = found
                self.run.log_message_with_code("RESUMED", epoch)
                detector = await asyncio.to_thread(Detector.from_bytes, data)
                first_epoch = epoch + 1
        if detector is None and base is not None:
            base.window_sizes = prepared.window_sizes
            detector = base
        if detector is None:
            detector = await asyncio.to_thread(
                new_detector, prepared, classes, params.hyperparameters, params.seed
            )
        detector.network = self.network(detector.network)
        return detector, first_epoch


def _classes(dataset: LoadedDataset, base: Detector | None) -> list[str]:
    """The classes to learn: the base model's (the dataset must not add any), else the
    dataset's."""
    if base is None:
        if not dataset.classes:
            raise DatasetError("dataset: no bounding box in any image")
        return dataset.classes
    extra = sorted(set(dataset.classes) - set(base.classes))
    if extra:
        raise TrainConfigError(
            f"model: the base model knows {base.classes}; the dataset adds {extra}"
        )
    return list(base.classes)
