"""The DM ("data manager") annotation format: what task and ground-truth data hold.

Every converter reads and writes DM (DESIGN §7); `DM_SCHEMA_VERSION` and the JSON Schema of
`DMData` (`make schemas` writes it to docs/schemas/DMData.schema.json) are its contract.
"""

from runmesh.dm.models import (
    DM_SCHEMA_VERSION,
    Annotation,
    AttributeValue,
    BoundingBox,
    Classification,
    DMData,
    DMImage,
    Keypoint,
    Keypoints,
    Polygon,
    class_names,
    parse_dm,
)

__all__ = [
    "DM_SCHEMA_VERSION",
    "Annotation",
    "AttributeValue",
    "BoundingBox",
    "Classification",
    "DMData",
    "DMImage",
    "Keypoint",
    "Keypoints",
    "Polygon",
    "class_names",
    "parse_dm",
]
