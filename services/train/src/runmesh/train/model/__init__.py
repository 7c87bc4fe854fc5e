"""The train service's built-in CPU model: a small, deterministic sliding-window detector.

Pure numpy + Pillow. `samples.training_samples` turns annotated images into feature rows,
`network.MLP` learns them (one epoch at a time, resumable bit for bit), `detector.Detector`
slides the learnt classifier over images, and `evaluation` scores the results.
`synthetic` draws learnable test images.
"""

from __future__ import annotations

from runmesh.train.model.boxes import Box, iou
from runmesh.train.model.detector import Detection, Detector
from runmesh.train.model.evaluation import (
    ClassificationReport,
    ClassMetrics,
    classification_report,
)
from runmesh.train.model.features import FEATURE_SIZE, batch_features, crop_features
from runmesh.train.model.network import MLP
from runmesh.train.model.samples import training_samples, window_sizes_from
from runmesh.train.model.synthetic import (
    coco_files,
    encode_png,
    make_synthetic_image,
    synthetic_images,
)

__all__ = [
    "FEATURE_SIZE",
    "MLP",
    "Box",
    "ClassMetrics",
    "ClassificationReport",
    "Detection",
    "Detector",
    "batch_features",
    "classification_report",
    "coco_files",
    "crop_features",
    "encode_png",
    "iou",
    "make_synthetic_image",
    "synthetic_images",
    "training_samples",
    "window_sizes_from",
]
