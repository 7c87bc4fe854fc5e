"""`BaseTest`: evaluate a registered model on a dataset's labelled boxes.

Reports accuracy, macro F1 and per-class precision / recall / F1 as `test` metrics, and the
confusion matrix as a JSON artifact. A dataset with a `test` split is evaluated on it alone.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import orjson

from runmesh.catalog import trained_models
from runmesh.plugins import Action
from runmesh.train.artifacts import load_detector
from runmesh.train.dataset import load_dataset
from runmesh.train.errors import ModelNotFoundError
from runmesh.train.params import EvaluateParams
from runmesh.train.resources import run_resources
from runmesh.train.trainer import evaluate_boxes


class BaseTest(Action[EvaluateParams]):
    """Scores a model on the boxes of a dataset."""

    name = "test"
    params_model = EvaluateParams
    progress_categories: ClassVar = {
        "dataset": {"description": "Loading the dataset", "proportion": 60},
        "test": {"description": "Evaluating", "proportion": 40},
    }
    metrics_categories: ClassVar = {
        "test": "accuracy, macro_f1, <class>_precision, <class>_recall, <class>_f1"
    }

    async def start(self) -> dict[str, object]:
        """Evaluate; the result holds the whole report and the confusion matrix's URI."""
        params = self.params
        run = self.run
        async with run_resources(run, "test", kind="runs") as res:
            settings, tenant, pool = res.settings, res.tenant, res.pool
            uris, artifacts = res.uris, res.artifacts
            async with pool.acquire(timeout=30) as conn:
                model = await trained_models.get_model(conn, tenant, params.model)
            if model is None:
                raise ModelNotFoundError(f"model: model {params.model} not found")
            detector = await load_detector(model.artifact_uri, uris)
            dataset = await load_dataset(
                params.dataset,
                tenant=tenant,
                settings=settings,
                pool=pool,
                uris=uris,
                progress=lambda done, total: run.set_progress(done, total, category="dataset"),
            )
            run.check_cancelled()
            tested = [s for s in dataset.samples if s.split == "test"] or dataset.samples
            run.set_progress(0, 1, category="test")
            report = await asyncio.to_thread(evaluate_boxes, detector, tested)
            run.set_progress(1, 1, category="test")
            values = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
            for name, scores in report["per_class"].items():
                values |= {
                    f"{name}_precision": scores["precision"],
                    f"{name}_recall": scores["recall"],
                    f"{name}_f1": scores["f1"],
                }
            run.set_metrics(values, "test")
            matrix = {"classes": detector.classes, "matrix": report["confusion_matrix"]}
            stored = await artifacts.save_file("confusion_matrix.json", orjson.dumps(matrix))
            run.log_artifact(
                "confusion_matrix",
                stored.uri,
                size=stored.size,
                checksum=stored.checksum,
                media_type="application/json",
            )
            return {
                "model_id": str(model.id),
                "images": len(tested),
                "report": dict(report),
                "confusion_matrix_uri": stored.uri,
            }
