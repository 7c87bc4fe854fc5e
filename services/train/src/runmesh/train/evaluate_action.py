"""`BaseTest`: evaluate a registered model's detections on a dataset's labelled boxes.

The model detects objects in every image as inference would; its detections are scored
against the ground-truth boxes (`model.detection_metrics`): COCO mAP@[.5:.95], mAP@.5 and
per-class AP, and precision / recall at the run's threshold. These are the `test` metrics, and
are stored on the model (`test_map`, ...). How well the model names the class of a
ground-truth box (given the box) is reported beside them as `box_classification`, with its
confusion matrix as a JSON artifact: it says nothing of finding the objects, so it is not a
headline. A dataset with a `test` split is evaluated on it alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import orjson

from runmesh.catalog import trained_models
from runmesh.plugins import Action, Run
from runmesh.train.artifacts import load_model
from runmesh.train.dataset import Sample, load_dataset
from runmesh.train.errors import ModelNotFoundError
from runmesh.train.model.detection_metrics import ImageTruth, detection_report
from runmesh.train.model.detector import Detection, Detector
from runmesh.train.model.onnx_detector import AnyDetector
from runmesh.train.params import EvaluateParams
from runmesh.train.resources import run_resources
from runmesh.train.trainer import evaluate_boxes

SCORE_FLOOR = 0.05
"""Detections below this score are not scored (COCO's usual floor; 100 per image at most)."""
_BATCH = 8  # images per detection call: `inference`'s default batch_size


class BaseTest(Action[EvaluateParams]):
    """Scores a model on the boxes of a dataset."""

    name = "test"
    params_model = EvaluateParams
    progress_categories: ClassVar = {
        "dataset": {"description": "Loading the dataset", "proportion": 30},
        "test": {"description": "Detecting and scoring", "proportion": 70},
    }
    metrics_categories: ClassVar = {"test": "map, map_50, precision, recall, <class>_ap"}

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
            detector = await load_model(model, uris)
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
            detections = await _detect_all(run, detector, tested)
            truth = [
                ImageTruth(width=s.image.shape[1], height=s.image.shape[0], boxes=s.boxes)
                for s in tested
            ]
            detection = await asyncio.to_thread(
                detection_report,
                truth,
                detections,
                detector.classes,
                threshold=params.confidence_threshold,
            )
            values = {
                "map": detection["map"],
                "map_50": detection["map_50"],
                "precision": detection["precision"],
                "recall": detection["recall"],
            }
            values |= {
                f"{name}_ap": ap for name, ap in detection["per_class_ap"].items() if ap is not None
            }
            run.set_metrics(values, "test")
            async with pool.acquire(timeout=30) as conn:
                await trained_models.record_test(
                    conn,
                    tenant,
                    model.id,
                    {f"test_{name}": value for name, value in values.items()},
                )
            boxes: dict[str, object] | None = None
            matrix_uri = None
            if isinstance(detector, Detector):  # an imported ONNX model only detects
                report = await asyncio.to_thread(evaluate_boxes, detector, tested)
                boxes = dict(report)
                matrix = {"classes": detector.classes, "matrix": report["confusion_matrix"]}
                stored = await artifacts.save_file("confusion_matrix.json", orjson.dumps(matrix))
                run.log_artifact(
                    "confusion_matrix",
                    stored.uri,
                    size=stored.size,
                    checksum=stored.checksum,
                    media_type="application/json",
                )
                matrix_uri = stored.uri
            return {
                "model_id": str(model.id),
                "images": len(tested),
                "report": {"detection": dict(detection), "box_classification": boxes},
                "confusion_matrix_uri": matrix_uri,
            }


async def _detect_all(
    run: Run, detector: AnyDetector, samples: Sequence[Sample]
) -> list[list[Detection]]:
    """The detector's detections on each image, every one down to `SCORE_FLOOR` (mAP ranks
    them all; precision and recall keep those at the threshold), `_BATCH` images per call so
    an imported model takes them as a batch, as in `inference`."""
    found: list[list[Detection]] = []
    run.set_progress(0, len(samples), category="test")
    for start in range(0, len(samples), _BATCH):
        images = [sample.image for sample in samples[start : start + _BATCH]]
        found += await asyncio.to_thread(
            detector.detect_batch, images, threshold=SCORE_FLOOR, max_detections=100
        )
        run.set_progress(len(found), len(samples), category="test")
        run.check_cancelled()
    return found
