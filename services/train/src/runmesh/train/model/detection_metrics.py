"""Detection metrics for `test`: COCO-style mAP by faster-coco-eval, precision and recall at the
run's score threshold.

mAP@[.5:.95], mAP@.5 and each class's AP are COCO's own definitions, computed by
faster-coco-eval (the same numbers as pycocotools, several times faster): every detection the
model makes above a low floor is ranked by score, so the numbers do not depend on the
threshold. Precision and recall are what a user of the model sees at the chosen threshold: a
detection of a class matches an unmatched ground-truth box of that class on its image with
IoU >= 0.5, best score first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from runmesh.train.model.boxes import Box, iou
from runmesh.train.model.detector import Detection

MATCH_IOU = 0.5
"""The IoU a detection needs with a ground-truth box to count as a true positive (precision
and recall at the threshold; COCO's mAP@.5 uses the same)."""


@dataclass(frozen=True, slots=True)
class ImageTruth:
    """One image's size and its ground-truth `(class, box)` pairs."""

    width: int
    height: int
    boxes: Sequence[tuple[str, Box]]


class DetectionReport(TypedDict):
    """What `detection_report` computes; an AP is None for a class with no ground truth."""

    map: float
    map_50: float
    per_class_ap: dict[str, float | None]
    per_class_ap_50: dict[str, float | None]
    threshold: float
    precision: float
    recall: float
    true_positives: int
    detections: int
    ground_truth: int


def detection_report(
    truth: Sequence[ImageTruth],
    detections: Sequence[Sequence[Detection]],
    classes: Sequence[str],
    *,
    threshold: float,
) -> DetectionReport:
    """Score `detections[i]` (the model's on image i) against `truth[i]`, over `classes`.

    Ground-truth boxes of other classes are left out (the model cannot name them)."""
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} images but detections for {len(detections)}")
    known = {name: index + 1 for index, name in enumerate(classes)}
    ground, results = _coco(truth, detections, known)
    ap, ap50 = _average_precision(ground, results, classes)
    kept = [[d for d in image if d.score >= threshold] for image in detections]
    matched, made, present = _matches(truth, kept, known)
    return {
        "map": _mean(ap.values()),
        "map_50": _mean(ap50.values()),
        "per_class_ap": ap,
        "per_class_ap_50": ap50,
        "threshold": threshold,
        "precision": matched / made if made else 0.0,
        "recall": matched / present if present else 0.0,
        "true_positives": matched,
        "detections": made,
        "ground_truth": present,
    }


def _coco(
    truth: Sequence[ImageTruth],
    detections: Sequence[Sequence[Detection]],
    known: dict[str, int],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground truth as a COCO dataset, and the detections as COCO results (1-based ids)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for number, (image, found) in enumerate(zip(truth, detections, strict=True), start=1):
        images.append({"id": number, "width": image.width, "height": image.height})
        for name, (x, y, w, h) in image.boxes:
            if name in known:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": number,
                        "category_id": known[name],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        results += [
            {
                "image_id": number,
                "category_id": known[d.class_name],
                "bbox": list(d.box),
                "score": d.score,
            }
            for d in found
            if d.class_name in known
        ]
    categories = [{"id": index, "name": name} for name, index in known.items()]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _average_precision(
    ground: dict[str, Any], results: list[dict[str, Any]], classes: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Each class's AP@[.5:.95] and AP@.5 (area all, 100 detections per image, as COCO's)."""
    ap: dict[str, float | None] = dict.fromkeys(classes)
    ap50: dict[str, float | None] = dict.fromkeys(classes)
    present = {a["category_id"] for a in ground["annotations"]}
    for index, name in enumerate(classes):
        if index + 1 in present:
            ap[name] = ap50[name] = 0.0  # no detection of it at all
    if not results or not present:
        return ap, ap50
    coco = COCO(ground)
    evaluation = COCOeval_faster(coco, coco.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    # precision[iou threshold, recall point, class, area range, max detections]; -1: no truth
    precision = np.asarray(evaluation.eval["precision"])[:, :, :, 0, -1]
    for index, name in enumerate(classes):
        curve = precision[:, :, index]
        if index + 1 in present:
            ap[name] = float(np.mean(curve[curve > -1])) if (curve > -1).any() else 0.0
            first = curve[0]  # IoU 0.5
            ap50[name] = float(np.mean(first[first > -1])) if (first > -1).any() else 0.0
    return ap, ap50


def _matches(
    truth: Sequence[ImageTruth], kept: Sequence[Sequence[Detection]], known: dict[str, int]
) -> tuple[int, int, int]:
    """True positives, detections and ground-truth boxes at the threshold (IoU >= 0.5)."""
    matched = made = present = 0
    for image, found in zip(truth, kept, strict=True):
        boxes = [(name, box) for name, box in image.boxes if name in known]
        present += len(boxes)
        taken = [False] * len(boxes)
        for detection in sorted(found, key=lambda d: -d.score):
            if detection.class_name not in known:
                continue
            made += 1
            best, best_iou = -1, MATCH_IOU
            for index, (name, box) in enumerate(boxes):
                if taken[index] or name != detection.class_name:
                    continue
                overlap = iou(detection.box, box)
                if overlap >= best_iou:
                    best, best_iou = index, overlap
            if best >= 0:
                taken[best] = True
                matched += 1
    return matched, made, present


def _mean(values: Iterable[float | None]) -> float:
    scored = [value for value in values if value is not None]
    return sum(scored) / len(scored) if scored else 0.0
