"""Classification metrics for the train service's reports: accuracy, per-class P/R/F1, confusion.

`iou` is re-exported from `boxes` so callers that score detections find it next to the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from runmesh.train.model.boxes import iou

__all__ = ["ClassMetrics", "ClassificationReport", "classification_report", "iou"]


class ClassMetrics(TypedDict):
    """One class's scores; `support` is how many true labels it has."""

    precision: float
    recall: float
    f1: float
    support: int


class ClassificationReport(TypedDict):
    """The result of `classification_report`."""

    accuracy: float
    per_class: dict[str, ClassMetrics]
    macro_f1: float
    confusion_matrix: list[list[int]]


def _ratio(numerator: int, denominator: int) -> float:
    """`numerator / denominator`, 0.0 for an empty denominator (nothing predicted / present)."""
    return numerator / denominator if denominator else 0.0


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]
) -> ClassificationReport:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix.

    `confusion_matrix[i][j]` counts items of true class `classes[i]` predicted as `classes[j]`.
    Metrics with an empty denominator are 0.0 (as scikit-learn's `zero_division=0`); macro F1
    averages every class in `classes`, including ones with no support. Labels outside
    `classes` raise ValueError: add them (e.g. "background") to `classes` to count them.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError("classes must be distinct")
    unknown = sorted({label for label in (*y_true, *y_pred) if label not in index})
    if unknown:
        raise ValueError(f"labels not in classes: {unknown}")
    n = len(classes)
    matrix = [[0] * n for _ in range(n)]
    for true, pred in zip(y_true, y_pred, strict=True):
        matrix[index[true]][index[pred]] += 1
    per_class: dict[str, ClassMetrics] = {}
    for i, name in enumerate(classes):
        hits = matrix[i][i]
        predicted = sum(matrix[row][i] for row in range(n))
        support = sum(matrix[i])
        precision = _ratio(hits, predicted)
        recall = _ratio(hits, support)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct = sum(matrix[i][i] for i in range(n))
    return {
        "accuracy": _ratio(correct, len(y_true)),
        "per_class": per_class,
        "macro_f1": sum(m["f1"] for m in per_class.values()) / n if n else 0.0,
        "confusion_matrix": matrix,
    }
