"""A sliding-window detector: the MLP scores windows of the typical training box sizes.

Windows of each size in `window_sizes` slide over the image at a stride of `stride_fraction` of
the window; each window is scored by the network, whose last output is "background". A window's
detection is its best non-background class; those at or above the threshold go through greedy
per-class NMS. Saved as an `.npz` archive (arrays plus a JSON metadata entry), never pickled.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runmesh.train.model.boxes import Box, iou_one_to_many
from runmesh.train.model.features import FEATURE_SIZE, batch_features
from runmesh.train.model.network import MLP, StateValue

FORMAT = "runmesh-detector"
FORMAT_VERSION = 1
# The archive entry holding the JSON metadata as UTF-8 bytes (a uint8 array: no pickle needed).
_METADATA_KEY = "__metadata__"
_NETWORK_PREFIX = "network."


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: class, `(x, y, w, h)` box in pixels, and probability score."""

    class_name: str
    box: Box
    score: float


def _positions(extent: int, window: int, stride: int) -> list[int]:
    """Window start offsets along one axis, always including the far edge."""
    last = extent - window
    starts = list(range(0, last + 1, stride))
    # Without this, objects in the last `stride - 1` pixels would never be centred in a window.
    if starts[-1] != last:
        starts.append(last)
    return starts


def nms(
    boxes: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], iou_max: float
) -> list[int]:
    """Greedy NMS: indices kept, best score first; ties keep the earlier index (stable)."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(as_box(boxes[best]), boxes[rest]) <= iou_max]
    return kept


def as_box(row: npt.NDArray[np.float64]) -> Box:
    """One `(4,)` array row as a `Box` tuple of Python floats."""
    x, y, w, h = (float(v) for v in row)
    return (x, y, w, h)


@dataclass
class Detector:
    """A trained detector: class names, the network, and the window sizes to slide.

    `network` has `len(classes) + 1` outputs; output `i < len(classes)` is `classes[i]` and
    the last one is background.
    """

    classes: list[str]
    network: MLP
    window_sizes: list[tuple[int, int]]
    stride_fraction: float = 0.25

    def __post_init__(self) -> None:
        """Check the parts fit together: one output per class plus background, sane sizes."""
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be a non-empty list of distinct names")
        if self.network.n_classes != len(self.classes) + 1:
            raise ValueError(
                f"network has {self.network.n_classes} outputs, expected "
                f"{len(self.classes) + 1} ({len(self.classes)} classes + background)"
            )
        if self.network.n_features != FEATURE_SIZE:
            raise ValueError(
                f"network takes {self.network.n_features} features, not {FEATURE_SIZE}"
            )
        if not self.window_sizes or any(w < 1 or h < 1 for w, h in self.window_sizes):
            raise ValueError("window_sizes must be a non-empty list of positive (w, h)")
        if not 0.0 < self.stride_fraction <= 1.0:
            raise ValueError("stride_fraction must be in (0, 1]")

    def windows(self, width: int, height: int) -> list[Box]:
        """Every sliding window for an image of this size, size by size, row by row."""
        out: list[Box] = []
        for window_w, window_h in self.window_sizes:
            # A window larger than the image is shrunk to it rather than skipped.
            w, h = min(window_w, width), min(window_h, height)
            stride_x = max(1, round(w * self.stride_fraction))
            stride_y = max(1, round(h * self.stride_fraction))
            for y in _positions(height, h, stride_y):
                for x in _positions(width, w, stride_x):
                    out.append((float(x), float(y), float(w), float(h)))
        # Two sizes shrunk to the same clipped size would score the same windows twice.
        return list(dict.fromkeys(out))

    def detect_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        *,
        threshold: float,
        max_detections: int = 100,
    ) -> list[list[Detection]]:
        """`detect` for each image (the network scores one image's windows as a batch)."""
        return [
            self.detect(image, threshold=threshold, max_detections=max_detections)
            for image in images
        ]

    def detect(
        self,
        image: npt.NDArray[np.uint8],
        *,
        threshold: float,
        max_detections: int = 100,
        nms_iou: float = 0.3,
    ) -> list[Detection]:
        """Objects in an `H` x `W` x 3 uint8 image, best score first, every score >= threshold.

        NMS is per class: a window overlapping a better one of the same class by more than
        `nms_iou` is dropped.
        """
        if max_detections < 0:
            raise ValueError("max_detections must not be negative")
        windows = self.windows(int(image.shape[1]), int(image.shape[0]))
        probabilities = self.network.predict_proba(batch_features(image, windows))
        foreground = probabilities[:, : len(self.classes)]
        labels = np.argmax(foreground, axis=1)
        scores = foreground[np.arange(len(windows)), labels]
        keep = scores >= threshold
        boxes = np.asarray(windows, dtype=np.float64)
        found: list[Detection] = []
        for class_index, name in enumerate(self.classes):
            selected = np.flatnonzero(keep & (labels == class_index))
            if selected.size == 0:
                continue
            for i in nms(boxes[selected], scores[selected], nms_iou):
                row = selected[i]
                found.append(Detection(name, as_box(boxes[row]), float(scores[row])))
        # Stable sort on score only: equal scores keep class order, then NMS order.
        found.sort(key=lambda d: -d.score)
        return found[:max_detections]

    def classify(
        self, image: npt.NDArray[np.uint8], boxes: Sequence[Box]
    ) -> list[tuple[str, float]]:
        """For each given box, the best non-background class and its probability."""
        if len(boxes) == 0:
            return []
        probabilities = self.network.predict_proba(batch_features(image, boxes))
        foreground = probabilities[:, : len(self.classes)]
        labels = np.argmax(foreground, axis=1)
        return [
            (self.classes[int(label)], float(row[label]))
            for label, row in zip(labels, foreground, strict=True)
        ]

    def to_bytes(self) -> bytes:
        """The detector as an `.npz` archive: network arrays plus a JSON metadata entry.

        The archive holds no pickled objects; the zip entries carry the write time, so two
        calls may differ in those bytes while loading to the same detector.
        """
        arrays: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.uint8]] = {}
        scalars: dict[str, int | float] = {}
        for key, value in self.network.state().items():
            if isinstance(value, np.ndarray):
                arrays[_NETWORK_PREFIX + key] = value
            else:
                scalars[key] = value
        metadata = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "classes": self.classes,
            "window_sizes": [list(size) for size in self.window_sizes],
            "stride_fraction": self.stride_fraction,
            "network_scalars": scalars,
        }
        arrays[_METADATA_KEY] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Detector:
        """Load a detector written by `to_bytes`; raises ValueError for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                entries = {key: np.asarray(archive[key]) for key in archive.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a detector archive: {exc}") from exc
        if _METADATA_KEY not in entries:
            raise ValueError("not a detector archive: no metadata entry")
        try:
            metadata = json.loads(entries[_METADATA_KEY].astype(np.uint8).tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"detector metadata is not JSON: {exc}") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError("not a detector archive: wrong format tag")
        if metadata.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported detector format version {metadata.get('version')!r}")
        state: dict[str, StateValue] = {
            key.removeprefix(_NETWORK_PREFIX): np.asarray(value, dtype=np.float64)
            for key, value in entries.items()
            if key.startswith(_NETWORK_PREFIX)
        }
        try:
            for key, value in metadata["network_scalars"].items():
                state[key] = int(value) if isinstance(value, int) else float(value)
            classes = [str(name) for name in metadata["classes"]]
            sizes = [(int(w), int(h)) for w, h in metadata["window_sizes"]]
            stride_fraction = float(metadata["stride_fraction"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"detector metadata is malformed: {exc}") from exc
        return cls(
            classes=classes,
            network=MLP.from_state(state),
            window_sizes=sizes,
            stride_fraction=stride_fraction,
        )
