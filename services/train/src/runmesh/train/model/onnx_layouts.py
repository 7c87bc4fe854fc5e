"""The output layouts an imported ONNX detector may declare (`onnx_detector` reads them)."""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

OnnxLayout: TypeAlias = Literal["yolov8", "yolov5", "torchvision", "boxes_scores_classes"]
LAYOUTS: tuple[str, ...] = get_args(OnnxLayout)
