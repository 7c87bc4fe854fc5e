"""Fixed-length features of an image region, enough to tell the classes apart by colour and shape.

A box's feature vector (`FEATURE_SIZE` float32 values, all in [0, 1]) is:

* the region resized to 8 x 8 with PIL's bilinear filter, RGB, row-major (192 values): shape;
* the per-channel mean and standard deviation over the region's pixels (6 values): colour;
* an 8-bin hue histogram, each pixel weighted by its chroma so grey pixels (whose hue is noise)
  add nothing, divided by the region's area (8 values): colour, robust to brightness;
* the same 14 statistics over a context ring around the box (a quarter of its size wide,
  clipped to the image; zeros where the ring is empty): a window inside a big red square looks
  just like a small red square, except that its surroundings are red too.

The statistics come from integer per-pixel tables, summed either with an integral image (many
overlapping regions: sliding windows) or directly per crop (a few boxes), band by band of rows
on a large image; the sums are exact integers either way, so every route gives bit-identical
features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from runmesh.train.model.boxes import Box

THUMB_SIZE = 8
HUE_BINS = 8
CONTEXT_FRACTION = 0.25
"""Width of the context ring around a box, as a fraction of the box's width / height."""
_STATS_SIZE = 3 + 3 + HUE_BINS
FEATURE_SIZE = THUMB_SIZE * THUMB_SIZE * 3 + 2 * _STATS_SIZE
"""Length of one feature vector: 8x8x3 thumbnail, then mean/std/hue for box and ring (220)."""

# Per-pixel table channels: R, G, B, their squares, then one chroma-weighted channel per hue bin.
_TABLE_CHANNELS = 6 + HUE_BINS
# Pixels per integer table or integral image at once: int64 x 14 channels is ~30 MB at 2^18
# pixels (plus cumsum temporaries), so large images are worked through in bands of rows.
_MAX_TABLE_PIXELS = 1 << 18


def _check_image(image: npt.NDArray[np.uint8]) -> None:
    """Refuse anything but an `H` x `W` x 3 uint8 array: features assume 0-255 RGB."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be an H x W x 3 uint8 array, got shape {image.shape} dtype {image.dtype}"
        )


def _pixel_box(image: npt.NDArray[np.uint8], box: Box) -> tuple[int, int, int, int]:
    """The box as integer pixel bounds `(x0, y0, x1, y1)`, grown outwards and clipped.

    Raises ValueError for a box with no area, a non-finite coordinate, or nothing inside the image.
    """
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box) or w <= 0 or h <= 0:
        raise ValueError(f"degenerate box {box}: width and height must be positive and finite")
    height, width = image.shape[0], image.shape[1]
    x0 = max(0, math.floor(x))
    y0 = max(0, math.floor(y))
    x1 = min(width, math.ceil(x + w))
    y1 = min(height, math.ceil(y + h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def _pixel_table(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Integer per-pixel values whose sums give the region statistics: `(h, w, 14)` int64."""
    rgb = pixels.astype(np.int64)
    high = rgb.max(axis=2)
    low = rgb.min(axis=2)
    chroma = high - low
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Standard hexcone hue in [0, 6); pixels with zero chroma get weight 0, so their bin is moot.
    safe = np.where(chroma > 0, chroma, 1).astype(np.float64)
    hue = np.where(
        high == r,
        np.mod((g - b) / safe, 6.0),
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    bins = np.clip(np.floor(hue * (HUE_BINS / 6.0)).astype(np.int64), 0, HUE_BINS - 1)
    table = np.zeros((*pixels.shape[:2], _TABLE_CHANNELS), dtype=np.int64)
    table[..., 0:3] = rgb
    table[..., 3:6] = rgb * rgb
    hist = table[..., 6:]
    np.put_along_axis(hist, bins[..., None], chroma[..., None], axis=2)
    return table


def _table_sum(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Sum of the pixel table over a region, `(14,)` int64, a band of rows at a time."""
    rows = max(1, _MAX_TABLE_PIXELS // max(1, pixels.shape[1]))
    total = np.zeros(_TABLE_CHANNELS, dtype=np.int64)
    for top in range(0, pixels.shape[0], rows):
        total += _pixel_table(pixels[top : top + rows]).sum(axis=(0, 1))
    return total


def _integral_sums(
    pixels: npt.NDArray[np.uint8], bounds: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Sums of the pixel table over many regions of `pixels`, through one integral image."""
    height, width = pixels.shape[0], pixels.shape[1]
    integral = np.zeros((height + 1, width + 1, _TABLE_CHANNELS), dtype=np.int64)
    np.cumsum(np.cumsum(_pixel_table(pixels), axis=0), axis=1, out=integral[1:, 1:])
    x0, y0, x1, y1 = bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3]
    return np.asarray(
        integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0], dtype=np.int64
    )


def _region_sums(
    image: npt.NDArray[np.uint8], bounds: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Exact per-region sums of the pixel table, `(n, 14)` int64, for `(n, 4)` x0,y0,x1,y1.

    Regions are taken in bands of rows (by top edge) small enough for an integral image of
    the band to stay within `_MAX_TABLE_PIXELS`; a band whose regions cover more pixels than
    its bounding rectangle (overlapping sliding windows) goes through one integral image, the
    rest are summed crop by crop. Both give the same exact integers.
    """
    width = image.shape[1]
    band_rows = max(1, _MAX_TABLE_PIXELS // width)
    sums = np.empty((len(bounds), _TABLE_CHANNELS), dtype=np.int64)
    order = np.argsort(bounds[:, 1], kind="stable")
    start = 0
    while start < len(order):
        top = int(bounds[order[start], 1])
        stop = start + 1
        while stop < len(order) and int(bounds[order[stop], 3]) - top <= band_rows:
            stop += 1
        group = order[start:stop]
        start = stop
        boxes = bounds[group]
        left, bottom, right = int(boxes[:, 0].min()), int(boxes[:, 3].max()), int(boxes[:, 2].max())
        covered = int(np.sum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        if bottom - top <= band_rows and covered > (bottom - top) * (right - left):
            shifted = boxes - np.array([left, top, left, top], dtype=np.int64)
            sums[group] = _integral_sums(image[top:bottom, left:right], shifted)
        else:
            for i, (x0, y0, x1, y1) in zip(group.tolist(), boxes.tolist(), strict=True):
                sums[i] = _table_sum(image[y0:y1, x0:x1])
    return sums


def _statistics(
    sums: npt.NDArray[np.int64], area: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Mean, std (both scaled to [0, 1]) and hue histogram from table sums: `(n, 14)`.

    Rows with no area (an empty context ring at the image border) get all zeros.
    """
    safe = np.maximum(area, 1).astype(np.float64)[:, None]
    totals = sums.astype(np.float64)
    mean = totals[:, 0:3] / safe
    # Sums are exact integers, so E[x^2] - E[x]^2 only loses what float64 rounding loses;
    # clip the tiny negatives that rounding can still leave for a flat region.
    std = np.sqrt(np.clip(totals[:, 3:6] / safe - mean * mean, 0.0, None))
    hist = totals[:, 6:] / (255.0 * safe)
    return np.concatenate([mean / 255.0, std / 255.0, hist], axis=1)


def batch_features(image: npt.NDArray[np.uint8], boxes: Sequence[Box]) -> npt.NDArray[np.float32]:
    """Features of each `(x, y, w, h)` box in `image`: an `(n, FEATURE_SIZE)` float32 array.

    Boxes are clipped to the image; a box with no area inside it raises ValueError.
    """
    _check_image(image)
    if len(boxes) == 0:
        return np.zeros((0, FEATURE_SIZE), dtype=np.float32)
    height, width = image.shape[0], image.shape[1]
    inner = np.asarray([_pixel_box(image, box) for box in boxes], dtype=np.int64)
    # The context ring is a band CONTEXT_FRACTION of the box's size wide (at least one pixel)
    # around it, clipped to the image.
    pad_x = np.maximum(1, np.rint((inner[:, 2] - inner[:, 0]) * CONTEXT_FRACTION)).astype(np.int64)
    pad_y = np.maximum(1, np.rint((inner[:, 3] - inner[:, 1]) * CONTEXT_FRACTION)).astype(np.int64)
    outer = np.stack(
        [
            np.maximum(inner[:, 0] - pad_x, 0),
            np.maximum(inner[:, 1] - pad_y, 0),
            np.minimum(inner[:, 2] + pad_x, width),
            np.minimum(inner[:, 3] + pad_y, height),
        ],
        axis=1,
    )
    both = np.concatenate([inner, outer], axis=0)
    sums = _region_sums(image, both)
    areas = (both[:, 2] - both[:, 0]) * (both[:, 3] - both[:, 1])
    n = len(boxes)
    box_stats = _statistics(sums[:n], areas[:n])
    ring_stats = _statistics(sums[n:] - sums[:n], areas[n:] - areas[:n])

    picture = Image.fromarray(np.ascontiguousarray(image))
    # `box=` resamples straight from the source region (no crop copy), and joining the raw
    # bytes of all thumbnails skips a numpy conversion per window: most of detect's time.
    raw = b"".join(
        picture.resize(
            (THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1)
        ).tobytes()
        for x0, y0, x1, y1 in inner.tolist()
    )
    thumbs = np.frombuffer(raw, dtype=np.uint8).reshape(n, THUMB_SIZE * THUMB_SIZE * 3)

    features = np.concatenate([thumbs / 255.0, box_stats, ring_stats], axis=1)
    return features.astype(np.float32)


def crop_features(image: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.float32]:
    """Features of one `(x, y, w, h)` box: a 1-D float32 array of length `FEATURE_SIZE`.

    The box is clipped to the image; a box with no area (or none inside the image) raises
    ValueError. Same values as the matching row of `batch_features`.
    """
    return np.asarray(batch_features(image, [box])[0], dtype=np.float32)
