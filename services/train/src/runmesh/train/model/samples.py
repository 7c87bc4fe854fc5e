"""Training rows for the detector: annotated boxes as positives, background windows as negatives.

Each annotated box of a known class gives one row labelled with its class index. Background
rows, labelled `len(classes)` (the network's last output), come in two kinds:

* `negatives_per_image` random windows per image, sized like the image's boxes and overlapping
  none of them (IoU < 0.1): plain background;
* `near_misses_per_box` windows per box that overlap it partly but match no box well
  (0.1 <= IoU with it, IoU < 0.4 with every box): shifted, too large or too small windows.
  Without them a sliding window half on an object, or inside a large square, scores as high as
  the well-placed one, and detection precision collapses (measured: ~0.25 without, ~0.9 with).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from runmesh.train.model.boxes import Box, iou
from runmesh.train.model.features import FEATURE_SIZE, batch_features

Annotated = tuple[npt.NDArray[np.uint8], list[tuple[str, Box]]]
"""An image with its `(class_name, (x, y, w, h))` annotations."""

NEGATIVE_MAX_IOU = 0.1
"""A random background window overlaps every annotated box by less than this IoU."""

NEAR_MISS_MAX_IOU = 0.4
"""A near-miss window overlaps every annotated box by less than this IoU (and its own by at
least `NEGATIVE_MAX_IOU`); kept below the 0.5 IoU a detection needs to count as a match."""

# Placement attempts per background window before giving up on it (a crowded image).
_NEGATIVE_TRIES = 50


def window_sizes_from(boxes: Iterable[Box], max_sizes: int = 4) -> list[tuple[int, int]]:
    """Up to `max_sizes` typical `(w, h)` window sizes, in pixels, for a set of boxes.

    Boxes are ordered by area and the ones at evenly spaced quantiles (1/8, 3/8, 5/8, 7/8 for
    four) are taken, rounded and de-duplicated, smallest first; raises ValueError for no boxes.
    """
    sizes = sorted(
        ((float(w), float(h)) for _, _, w, h in boxes if w > 0 and h > 0),
        key=lambda wh: (wh[0] * wh[1], wh),
    )
    if not sizes:
        raise ValueError("need at least one box with a positive size")
    if max_sizes < 1:
        raise ValueError("max_sizes must be at least 1")
    picked: list[tuple[int, int]] = []
    for k in range(max_sizes):
        quantile = (2 * k + 1) / (2 * max_sizes)
        w, h = sizes[round(quantile * (len(sizes) - 1))]
        size = (max(1, round(w)), max(1, round(h)))
        if size not in picked:
            picked.append(size)
    return picked


def _background_windows(
    image: npt.NDArray[np.uint8],
    boxes: Sequence[Box],
    sizes: Sequence[tuple[float, float]],
    count: int,
    rng: np.random.Generator,
) -> list[Box]:
    """Up to `count` random windows with sizes drawn from `sizes`, clear of every box."""
    height, width = image.shape[0], image.shape[1]
    windows: list[Box] = []
    for _ in range(count):
        for _ in range(_NEGATIVE_TRIES):
            w, h = sizes[int(rng.integers(len(sizes)))]
            w, h = min(round(w), width), min(round(h), height)
            window: Box = (
                float(rng.integers(0, width - w + 1)),
                float(rng.integers(0, height - h + 1)),
                float(w),
                float(h),
            )
            if all(iou(window, box) < NEGATIVE_MAX_IOU for box in boxes):
                windows.append(window)
                break
    return windows


def _near_miss_windows(
    image: npt.NDArray[np.uint8],
    boxes: Sequence[Box],
    sizes: Sequence[tuple[float, float]],
    per_box: int,
    rng: np.random.Generator,
) -> list[Box]:
    """Up to `per_box` windows per box, partly on it but a poor match for every box."""
    height, width = image.shape[0], image.shape[1]
    windows: list[Box] = []
    for box in boxes:
        bx, by, bw, bh = box
        for _ in range(per_box):
            for _ in range(_NEGATIVE_TRIES):
                w, h = sizes[int(rng.integers(len(sizes)))]
                w, h = min(round(w), width), min(round(h), height)
                # Centre the window up to one window size away from the box's centre.
                cx = bx + bw / 2 + rng.uniform(-1.0, 1.0) * w
                cy = by + bh / 2 + rng.uniform(-1.0, 1.0) * h
                window: Box = (
                    float(min(max(round(cx - w / 2), 0), width - w)),
                    float(min(max(round(cy - h / 2), 0), height - h)),
                    float(w),
                    float(h),
                )
                if iou(window, box) >= NEGATIVE_MAX_IOU and all(
                    iou(window, other) < NEAR_MISS_MAX_IOU for other in boxes
                ):
                    windows.append(window)
                    break
    return windows


def training_samples(
    images: Iterable[Annotated],
    classes: list[str],
    *,
    rng: np.random.Generator,
    negatives_per_image: int = 4,
    near_misses_per_box: int = 4,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Feature rows `X` `(n, FEATURE_SIZE)` float32 and labels `y` `(n,)` int64 for training.

    Boxes of classes not in `classes` are not positives, but background windows still keep
    clear of them (they are objects, just not ours). Random background window sizes are drawn
    from the image's own boxes, or, for an image without boxes, from all boxes seen so far (a
    quarter of the image's shorter side before any); near-miss sizes from all boxes seen so far,
    so small windows inside big objects and big windows around small ones both occur.
    Rows come image by image: positives, then random negatives, then near misses.
    """
    if negatives_per_image < 0 or near_misses_per_box < 0:
        raise ValueError("negatives_per_image and near_misses_per_box must not be negative")
    index = {name: i for i, name in enumerate(classes)}
    background = len(classes)
    rows: list[npt.NDArray[np.float32]] = []
    labels: list[int] = []
    seen_sizes: list[tuple[float, float]] = []
    for image, labelled in images:
        positives = [(index[name], box) for name, box in labelled if name in index]
        all_boxes = [box for _, box in labelled]
        if positives:
            rows.append(batch_features(image, [box for _, box in positives]))
            labels.extend(label for label, _ in positives)
        image_sizes = [(w, h) for _, _, w, h in all_boxes if w > 0 and h > 0]
        seen_sizes.extend(image_sizes)
        sizes = image_sizes or seen_sizes
        if not sizes:
            side = max(1.0, min(image.shape[0], image.shape[1]) / 4.0)
            sizes = [(side, side)]
        negatives = _background_windows(image, all_boxes, sizes, negatives_per_image, rng)
        near = _near_miss_windows(image, all_boxes, seen_sizes, near_misses_per_box, rng)
        for windows in (negatives, near):
            if windows:
                rows.append(batch_features(image, windows))
                labels.extend([background] * len(windows))
    if not rows:
        return np.zeros((0, FEATURE_SIZE), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows, axis=0), np.asarray(labels, dtype=np.int64)
