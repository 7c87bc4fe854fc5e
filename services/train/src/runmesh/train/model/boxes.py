"""Axis-aligned boxes in pixel `(x, y, w, h)` form: the one IoU used by NMS, samples and reports."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]
"""A box as `(x, y, w, h)` in pixels: top-left corner, width and height."""


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x, y, w, h)` boxes; 0.0 when either has no area."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = min(ax + aw, bx + bw) - max(ax, bx)
    inter_h = min(ay + ah, by + bh) - max(ay, by)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    # A degenerate pair (both empty) has nothing to overlap; avoid dividing by zero.
    return float(inter / union) if union > 0 else 0.0


def iou_one_to_many(box: Box, others: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of `box` with each row of an `(n, 4)` array of `(x, y, w, h)` boxes.

    The vectorised twin of `iou`, for NMS over hundreds of windows; same arithmetic per pair.
    """
    x, y, w, h = box
    ox, oy, ow, oh = others[:, 0], others[:, 1], others[:, 2], others[:, 3]
    inter_w = np.clip(np.minimum(x + w, ox + ow) - np.maximum(x, ox), 0.0, None)
    inter_h = np.clip(np.minimum(y + h, oy + oh) - np.maximum(y, oy), 0.0, None)
    inter = inter_w * inter_h
    union = w * h + ow * oh - inter
    out = np.zeros(len(others), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out
