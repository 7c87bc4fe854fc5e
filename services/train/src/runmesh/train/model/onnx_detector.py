"""A detector a team brings as an ONNX file, run with onnxruntime, batched.

The file's outputs are read by a declared layout (`OnnxLayout`):

- `yolov8` (Ultralytics YOLOv8/v11 export): input `[B, 3, S, S]`, RGB 0-1, letterboxed;
  output `[B, 4 + C, N]`: cx, cy, w, h in input pixels, then C class scores.
- `yolov5` (Ultralytics YOLOv5 export): the same input; output `[B, N, 5 + C]`: cx, cy, w, h,
  objectness, then C class scores (a score is objectness x class score).
- `torchvision` (a torchvision detection model exported): input `[3, H, W]`, RGB 0-1, the
  image itself; outputs `boxes [N, 4]` (x1, y1, x2, y2), `labels [N]` (1-based: 0 is
  torchvision's background), `scores [N]`.
- `boxes_scores_classes` (generic): input `[1, 3, S, S]` letterboxed, or the image itself
  where the file leaves H and W open; outputs `boxes` (x1, y1, x2, y2 in input pixels),
  `scores` and `classes` (0-based), each with or without a leading batch axis of 1.

YOLO outputs are raw: this module keeps what scores at least the threshold and runs per-class
NMS. Boxes come back in the image's pixels as `(x, y, w, h)`. The two YOLO layouts take a
batch of images per call where the file allows it (`batch_size`); the others one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runmesh.train.model.detector import Detection, Detector, as_box, nms
from runmesh.train.model.onnx_layouts import LAYOUTS, OnnxLayout

_LETTERBOX_FILL = 114  # Ultralytics' grey
_DEFAULT_SIZE = 640  # a YOLO input whose size the file leaves open
_NMS_IOU = 0.45
_CANDIDATES = 30_000  # raw YOLO boxes kept for NMS at most, best first


class OnnxModelError(ValueError):
    """The file is not an ONNX model of its declared layout (the message says why)."""


@dataclass(frozen=True, slots=True)
class _Letterbox:
    """How an image was fitted into the model's input: input = image * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float


_SAME = _Letterbox(1.0, 0.0, 0.0)


class OnnxDetector:
    """`classes` name the model's outputs in order; `detect` and `detect_batch` as the
    built-in `Detector`'s (a session is safe to call from several threads)."""

    def __init__(
        self, data: bytes, layout: OnnxLayout, classes: Sequence[str], *, batch_size: int = 8
    ) -> None:
        if layout not in LAYOUTS:
            raise OnnxModelError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
        if not classes or len(set(classes)) != len(classes):
            raise OnnxModelError("classes must be a non-empty list of distinct names")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a job shares its machine; parallel images, not ops
        try:
            self._session = ort.InferenceSession(data, options, providers=_providers())
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise OnnxModelError(f"onnxruntime cannot load it: {exc}") from exc
        self.layout: OnnxLayout = layout
        self.classes = list(classes)
        self.batch_size = batch_size
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise OnnxModelError(f"it has {len(inputs)} inputs; a detector has one (the image)")
        self._input = inputs[0].name
        if inputs[0].type != "tensor(float)":
            raise OnnxModelError(
                f"its input is a {inputs[0].type}; runmesh feeds float32 images (export the "
                "model with a float32 input)"
            )
        shape = list(inputs[0].shape)
        self._check_input(shape)
        self._size = _fixed_size(shape)
        self._batched = layout in ("yolov8", "yolov5") and not isinstance(shape[0], int)
        self._outputs = [output.name for output in self._session.get_outputs()]
        expected = 1 if layout in ("yolov8", "yolov5") else 3
        if len(self._outputs) != expected:
            raise OnnxModelError(
                f"layout {layout} has {expected} output(s); the file has {len(self._outputs)}"
            )

    def _check_input(self, shape: list[Any]) -> None:
        rank = 3 if self.layout == "torchvision" else 4
        channels = shape[-3] if len(shape) == rank else None
        if len(shape) != rank or (isinstance(channels, int) and channels != 3):
            raise OnnxModelError(
                f"layout {self.layout} takes an image input of rank {rank} with 3 channels; "
                f"the file's input is {shape}"
            )

    def detect(
        self, image: npt.NDArray[np.uint8], *, threshold: float, max_detections: int = 100
    ) -> list[Detection]:
        """Objects in one `H` x `W` x 3 uint8 image, best score first, scores >= threshold."""
        return self.detect_batch([image], threshold=threshold, max_detections=max_detections)[0]

    def detect_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        *,
        threshold: float,
        max_detections: int = 100,
    ) -> list[list[Detection]]:
        """`detect` for each image, `batch_size` images per model call where it allows."""
        found: list[list[Detection]] = []
        step = self.batch_size if self._batched else 1
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            found += self._run(chunk, threshold, max_detections)
        return found

    def _run(
        self, images: Sequence[npt.NDArray[np.uint8]], threshold: float, limit: int
    ) -> list[list[Detection]]:
        if self.layout == "torchvision":
            tensor = np.ascontiguousarray(images[0].transpose(2, 0, 1), dtype=np.float32)
            tensor /= np.float32(255)
            boxes, labels, scores = self._call(tensor)
            found = self._listed(
                boxes, scores, np.asarray(labels) - 1, _SAME, images[0], threshold, limit
            )
            return [found]
        fits: list[_Letterbox]
        if self.layout == "boxes_scores_classes" and self._size is None:
            tensor = images[0].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
            fits = [_SAME]
        else:
            size = self._size or _DEFAULT_SIZE
            boxed = [_letterbox(image, size) for image in images]
            tensor = np.stack([pixels for pixels, _ in boxed])
            fits = [fit for _, fit in boxed]
        outputs = self._call(tensor)
        if self.layout == "boxes_scores_classes":
            boxes, scores, classes = outputs  # a leading batch axis of 1, or none
            found = self._listed(boxes, scores, classes, fits[0], images[0], threshold, limit)
            return [found]
        raw = np.asarray(outputs[0], dtype=np.float32)
        return [
            self._from_yolo(raw[index], fits[index], image, threshold, limit)
            for index, image in enumerate(images)
        ]

    def _call(self, tensor: npt.NDArray[np.float32]) -> list[Any]:
        try:
            return list(self._session.run(self._outputs, {self._input: tensor}))
        except Exception as exc:  # onnxruntime's own errors: a file that does not run
            shape = list(tensor.shape)
            raise OnnxModelError(f"onnxruntime failed on an input of {shape}: {exc}") from exc

    def _from_yolo(
        self,
        raw: npt.NDArray[np.float32],
        fit: _Letterbox,
        image: npt.NDArray[np.uint8],
        threshold: float,
        limit: int,
    ) -> list[Detection]:
        count = len(self.classes)
        if self.layout == "yolov8":
            if raw.ndim != 2 or raw.shape[0] != 4 + count:
                raise OnnxModelError(
                    f"a yolov8 output is [4 + {count} classes, N]; this one is {list(raw.shape)}"
                )
            rows = raw.T
            class_scores = rows[:, 4:]
        else:
            if raw.ndim != 2 or raw.shape[1] != 5 + count:
                raise OnnxModelError(
                    f"a yolov5 output is [N, 5 + {count} classes]; this one is {list(raw.shape)}"
                )
            rows = raw
            class_scores = rows[:, 5:] * rows[:, 4:5]
        labels = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(rows)), labels]
        keep = np.flatnonzero(scores >= threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")][:_CANDIDATES]
        cx, cy, w, h = (rows[keep, i] for i in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return self._listed(boxes, scores[keep], labels[keep], fit, image, threshold, limit)

    def _listed(
        self,
        corners: npt.NDArray[Any],
        scores: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        fit: _Letterbox,
        image: npt.NDArray[np.uint8],
        threshold: float,
        limit: int,
    ) -> list[Detection]:
        """Detections from x1 y1 x2 y2 boxes in input pixels: at the threshold, of known
        classes, per-class NMS, in the image's pixels, best first."""
        height, width = int(image.shape[0]), int(image.shape[1])
        corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if not len(corners) == len(scores) == len(labels):
            raise OnnxModelError(
                f"the outputs disagree: {len(corners)} boxes, {len(scores)} scores, "
                f"{len(labels)} classes"
            )
        known = (scores >= threshold) & (labels >= 0) & (labels < len(self.classes))
        corners, scores, labels = corners[known], scores[known], labels[known]
        corners[:, [0, 2]] = np.clip((corners[:, [0, 2]] - fit.pad_x) / fit.scale, 0, width)
        corners[:, [1, 3]] = np.clip((corners[:, [1, 3]] - fit.pad_y) / fit.scale, 0, height)
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        sized = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)  # clipped to nothing: off the image
        boxes, scores, labels = boxes[sized], scores[sized], labels[sized]
        kept: list[int] = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            kept += [int(members[i]) for i in nms(boxes[members], scores[members], _NMS_IOU)]
        kept.sort(key=lambda i: (-scores[i], i))
        return [
            Detection(self.classes[labels[i]], as_box(boxes[i]), float(scores[i]))
            for i in kept[:limit]
        ]


AnyDetector: TypeAlias = Detector | OnnxDetector
"""What a registered model loads as: the built-in detector or an imported ONNX file."""


def _providers() -> list[str]:
    """CUDA where this onnxruntime has it (and the job was given a GPU), else the CPU."""
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [provider for provider in wanted if provider in available]


def _fixed_size(shape: list[Any]) -> int | None:
    """The square input size a letterboxing layout needs, if the file fixes it."""
    height, width = shape[-2], shape[-1]
    if isinstance(height, int) and isinstance(width, int):
        if height != width:
            raise OnnxModelError(f"the input is {height} x {width}; a square input is supported")
        return height
    return None


def _letterbox(
    image: npt.NDArray[np.uint8], size: int
) -> tuple[npt.NDArray[np.float32], _Letterbox]:
    """The image scaled to fit `size` x `size`, centred on grey, as CHW float 0-1."""
    from PIL import Image

    height, width = int(image.shape[0]), int(image.shape[1])
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(
        Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.uint8
    )
    canvas = np.full((size, size, 3), _LETTERBOX_FILL, dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    tensor = canvas.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return tensor, _Letterbox(scale, float(pad_x), float(pad_y))
