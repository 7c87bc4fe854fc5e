"""Annotation format converters: DM to and from COCO, YOLO and Pascal VOC (DESIGN §7)."""

from runmesh.common.converters.base import (
    ConversionError,
    ConversionIssue,
    Dataset,
    DatasetWriter,
)

__all__ = ["ConversionError", "ConversionIssue", "Dataset", "DatasetWriter"]
