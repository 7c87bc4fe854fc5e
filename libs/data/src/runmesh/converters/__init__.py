"""Annotation format converters: DM to and from COCO, YOLO and Pascal VOC (DESIGN §7).

Each module has a streaming `DatasetWriter` and a reader back to DM; `WRITERS` maps an
export's `output_format` to its writer.
"""

from runmesh.converters.base import (
    ConversionError,
    ConversionIssue,
    Dataset,
    DatasetWriter,
)
from runmesh.converters.coco import CocoWriter, read_coco
from runmesh.converters.dm_json import DmJsonWriter, read_dm_json
from runmesh.converters.pascal_voc import PascalVocWriter, read_pascal_voc
from runmesh.converters.yolo import YoloWriter, read_yolo

WRITERS: dict[str, type[DatasetWriter]] = {
    writer.format: writer for writer in (DmJsonWriter, CocoWriter, YoloWriter, PascalVocWriter)
}

__all__ = [
    "WRITERS",
    "CocoWriter",
    "ConversionError",
    "ConversionIssue",
    "Dataset",
    "DatasetWriter",
    "DmJsonWriter",
    "PascalVocWriter",
    "YoloWriter",
    "read_coco",
    "read_dm_json",
    "read_pascal_voc",
    "read_yolo",
]
