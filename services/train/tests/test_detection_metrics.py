"""`test`'s detection metrics: mAP@[.5:.95], mAP@.5 and per-class AP equal what pycocotools
computes from the same boxes (the reference evaluator; runmesh computes them with
faster-coco-eval), and precision / recall at the threshold count hand-made matches."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from runmesh.train.model.boxes import Box
from runmesh.train.model.detection_metrics import ImageTruth, detection_report
from runmesh.train.model.detector import Detection

CLASSES = ["circle", "square", "triangle", "star"]  # "star" is never in the ground truth


def scene(seed: int) -> tuple[list[ImageTruth], list[list[Detection]]]:
    """40 images of 1-4 boxes; the model finds most of them, jittered, misses some, names a
    few wrongly and sees things that are not there, at scores from 0.05 up."""
    rng = np.random.default_rng(seed)
    truth: list[ImageTruth] = []
    found: list[list[Detection]] = []
    for _ in range(40):
        boxes: list[tuple[str, Box]] = []
        detections: list[Detection] = []
        for _ in range(int(rng.integers(1, 5))):
            name = str(rng.choice(CLASSES[:3]))
            x, y = (float(v) for v in rng.uniform(0, 80, 2))
            w, h = (float(v) for v in rng.uniform(8, 40, 2))
            boxes.append((name, (x, y, w, h)))
            if rng.random() < 0.85:  # found, more or less well placed
                dx, dy = (float(v) for v in rng.normal(0, w * 0.15, 2))
                named = name if rng.random() < 0.9 else str(rng.choice(CLASSES))
                score = float(rng.uniform(0.05, 1.0))
                detections.append(Detection(named, (x + dx, y + dy, w, h), score))
        for _ in range(int(rng.integers(0, 3))):  # nothing there
            x, y = (float(v) for v in rng.uniform(0, 80, 2))
            box = (x, y, float(rng.uniform(8, 30)), float(rng.uniform(8, 30)))
            detections.append(
                Detection(str(rng.choice(CLASSES)), box, float(rng.uniform(0.05, 0.7)))
            )
        truth.append(ImageTruth(width=128, height=128, boxes=boxes))
        found.append(detections)
    return truth, found


def pycocotools_scores(
    truth: list[ImageTruth], found: list[list[Detection]]
) -> tuple[float, float, dict[str, float]]:
    """mAP, mAP@.5 and per-class AP, from COCO JSON built here, by pycocotools."""
    ids = {name: number for number, name in enumerate(CLASSES, start=1)}
    dataset: dict[str, Any] = {
        "images": [{"id": i, "width": t.width, "height": t.height} for i, t in enumerate(truth, 1)],
        "annotations": [],
        "categories": [{"id": ids[name], "name": name} for name in CLASSES],
    }
    results = []
    for number, (image, detections) in enumerate(zip(truth, found, strict=True), start=1):
        for name, (x, y, w, h) in image.boxes:
            dataset["annotations"].append(
                {
                    "id": len(dataset["annotations"]) + 1,
                    "image_id": number,
                    "category_id": ids[name],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        results += [
            {
                "image_id": number,
                "category_id": ids[d.class_name],
                "bbox": list(d.box),
                "score": d.score,
            }
            for d in detections
        ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground = COCO()
        ground.dataset = copy.deepcopy(dataset)
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for index, name in enumerate(CLASSES):
        curve = precision[:, :, index]
        if (curve > -1).any():
            per_class[name] = float(np.mean(curve[curve > -1]))
    return float(evaluation.stats[0]), float(evaluation.stats[1]), per_class


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_map_and_per_class_ap_are_what_pycocotools_computes(seed: int) -> None:
    truth, found = scene(seed)
    report = detection_report(truth, found, CLASSES, threshold=0.5)
    expected_map, expected_map_50, expected_ap = pycocotools_scores(truth, found)
    assert 0.0 < expected_map < expected_map_50 < 1.0  # a case that can tell them apart
    assert report["map"] == pytest.approx(expected_map, abs=1e-9)
    assert report["map_50"] == pytest.approx(expected_map_50, abs=1e-9)
    assert report["per_class_ap"]["star"] is None  # no ground truth: no AP, not a zero
    assert {k: v for k, v in report["per_class_ap"].items() if v is not None} == pytest.approx(
        expected_ap, abs=1e-9
    )


def test_precision_and_recall_at_the_threshold_count_matches_at_iou_half() -> None:
    truth = [
        ImageTruth(100, 100, [("circle", (0, 0, 10, 10)), ("square", (50, 50, 20, 20))]),
        ImageTruth(100, 100, [("circle", (20, 20, 10, 10))]),
    ]
    found = [
        [
            Detection("circle", (1, 0, 10, 10), 0.9),  # a match (IoU 0.82)
            Detection("circle", (0, 1, 10, 10), 0.8),  # the same box again: a false positive
            Detection("square", (60, 60, 20, 20), 0.7),  # IoU 0.14: a false positive
        ],
        [
            Detection("square", (20, 20, 10, 10), 0.9),  # right place, wrong class
            Detection("circle", (20, 20, 10, 10), 0.3),  # right, but under the threshold
        ],
    ]
    report = detection_report(truth, found, CLASSES, threshold=0.5)
    assert (report["true_positives"], report["detections"], report["ground_truth"]) == (1, 4, 3)
    assert report["precision"] == pytest.approx(1 / 4)
    assert report["recall"] == pytest.approx(1 / 3)
    low = detection_report(truth, found, CLASSES, threshold=0.2)
    assert (low["true_positives"], low["detections"]) == (2, 5)


def test_no_detections_score_zero_and_mismatched_inputs_are_refused() -> None:
    truth = [ImageTruth(64, 64, [("circle", (0, 0, 10, 10))])]
    report = detection_report(truth, [[]], CLASSES, threshold=0.5)
    assert report["map"] == 0.0 and report["map_50"] == 0.0
    assert report["per_class_ap"] == {"circle": 0.0, "square": None, "triangle": None, "star": None}
    assert report["precision"] == 0.0 and report["recall"] == 0.0
    with pytest.raises(ValueError, match="1 images but detections for 2"):
        detection_report(truth, [[], []], CLASSES, threshold=0.5)
