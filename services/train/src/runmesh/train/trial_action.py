"""`BaseTuneTrial`: one trial of a tune run's Optuna study, run as a run of its own.

It asks the shared study (PostgreSQL) for hyperparameters, trains with them, reports the
metric per epoch to Optuna (which may prune the trial) and as `trial_<n>` metrics, stores
the trial's model and tells the study its value. Any replica can run any trial.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import optuna

from runmesh.plugins import Action
from runmesh.train import study as studies
from runmesh.train.artifacts import RunArtifacts
from runmesh.train.dataset import load_dataset
from runmesh.train.errors import DatasetError
from runmesh.train.model import Detector
from runmesh.train.params import Hyperparameters, TrialParams
from runmesh.train.resources import run_resources
from runmesh.train.trainer import EpochReport, evaluate_boxes, new_detector, prepare, train_epochs


class _Pruned(Exception):
    """Optuna pruned the trial at this epoch."""


class BaseTuneTrial(Action[TrialParams]):
    """Trains once with the hyperparameters the study suggests."""

    name = "tune_trial"
    params_model = TrialParams
    progress_categories: ClassVar = {
        "dataset": {"description": "Loading the dataset", "proportion": 20},
        "train": {"description": "Training, per epoch", "proportion": 80},
    }

    async def start(self) -> dict[str, object]:
        """Run the trial; the result says its number, state, value and model."""
        params = self.params
        run = self.run
        async with run_resources(run, "tune_trial", owner=params.tune_run) as res:
            settings, tenant, pool = res.settings, res.tenant, res.pool
            uris, artifacts = res.uris, res.artifacts
            dataset = await load_dataset(
                params.dataset,
                tenant=tenant,
                settings=settings,
                pool=pool,
                uris=uris,
                progress=lambda done, total: run.set_progress(done, total, category="dataset"),
            )
            if not dataset.classes:
                raise DatasetError("dataset: no bounding box in any image")
            sampler = optuna.samplers.TPESampler(seed=run.run_id.int % 2**32)
            pruner: optuna.pruners.BasePruner = (
                optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
                if params.pruning
                else optuna.pruners.NopPruner()
            )
            with studies.opened_storage(settings) as rdb:
                study = await asyncio.to_thread(
                    optuna.load_study,
                    study_name=params.study,
                    storage=rdb,
                    sampler=sampler,
                    pruner=pruner,
                )
                trial = await asyncio.to_thread(study.ask)
                try:
                    return await self._train(
                        params, dataset.classes, dataset.samples, study, trial, artifacts
                    )
                except _Pruned:
                    await asyncio.to_thread(study.tell, trial, state=optuna.trial.TrialState.PRUNED)
                    return {"trial": trial.number, "state": "pruned", "params": trial.params}
                except BaseException:
                    await asyncio.to_thread(study.tell, trial, state=optuna.trial.TrialState.FAIL)
                    raise

    async def _train(
        self,
        params: TrialParams,
        classes: list[str],
        samples: Any,
        study: optuna.Study,
        trial: optuna.Trial,
        artifacts: RunArtifacts,
    ) -> dict[str, object]:
        run = self.run
        values = studies.suggest(trial, params.search_space)
        try:
            hyper = Hyperparameters.model_validate(params.hyperparameters.model_dump() | values)
        except ValueError as exc:
            raise DatasetError(f"trial {trial.number}: {exc}") from exc
        category = f"trial_{trial.number}"
        prepared = await asyncio.to_thread(
            prepare,
            samples,
            classes,
            hyper,
            validation_split=params.validation_split,
            seed=params.seed,
        )
        if not len(prepared.y_validation):
            raise DatasetError("dataset: no validation image; raise validation_split")
        detector = await asyncio.to_thread(new_detector, prepared, classes, hyper, params.seed)
        last: list[float] = []

        def on_epoch(report: EpochReport, _current: Detector) -> None:
            assert report.validation_accuracy is not None and report.validation_loss is not None
            value = (
                report.validation_accuracy
                if params.metric == "validation_accuracy"
                else report.validation_loss
            )
            last[:] = [value]
            run.set_metrics(
                {
                    "loss": report.loss,
                    "accuracy": report.accuracy,
                    "validation_loss": report.validation_loss,
                    "validation_accuracy": report.validation_accuracy,
                },
                category,
                step=report.epoch,
            )
            trial.report(value, report.epoch)
            run.set_progress(report.epoch, hyper.epochs, category="train")
            if trial.should_prune():
                raise _Pruned(report.epoch)
            run.check_cancelled()

        await asyncio.to_thread(
            train_epochs,
            detector,
            prepared,
            hyper,
            seed=params.seed,
            first_epoch=1,
            on_epoch=on_epoch,
        )
        report = await asyncio.to_thread(evaluate_boxes, detector, prepared.validation)
        metrics = {
            params.metric: last[0],
            "validation_box_accuracy": report["accuracy"],
            "validation_macro_f1": report["macro_f1"],
        }
        stored = await artifacts.save_model(
            detector.to_bytes(), name=f"trial-{trial.number:04d}.npz"
        )
        run.log_artifact(
            f"trial-{trial.number}-model",
            stored.uri,
            size=stored.size,
            checksum=stored.checksum,
            media_type="application/x-npz",
        )
        attributes = {
            "artifact_uri": stored.uri,
            "classes": classes,
            "metrics": metrics,
            "hyperparameters": hyper.model_dump(),
            "run_id": str(run.run_id),
        }
        await asyncio.to_thread(_set_user_attrs, trial, attributes)
        await asyncio.to_thread(study.tell, trial, last[0])
        return {
            "trial": trial.number,
            "state": "complete",
            "value": last[0],
            "params": values,
            "artifact_uri": stored.uri,
        }


def _set_user_attrs(trial: optuna.Trial, attributes: dict[str, Any]) -> None:
    """What the tune run needs of a trial to register its model (one write each)."""
    for key, value in attributes.items():
        trial.set_user_attr(key, value)
