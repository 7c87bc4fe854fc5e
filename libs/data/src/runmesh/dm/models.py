"""Pydantic models of DM v1: images with their sizes and annotations in pixel coordinates.

Coordinates are floats in pixels with the origin at the image's top-left corner; a bounding
box is `[x, y, width, height]` (the Synapse and COCO convention). Every annotation names its
class by `class_name`; the project's label schema gives the classes their stable ids, so DM
itself never carries ids that a converter could get out of step with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, field_validator

DM_SCHEMA_VERSION: Final = "1.0"

AttributeValue: TypeAlias = str | int | float | bool
_Text = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]


def _finite(values: Iterable[float]) -> None:
    for value in values:
        if not math.isfinite(value):
            raise ValueError("coordinates must be finite numbers")


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: _Text = Field(description="Unique within its image")
    class_name: _Text = Field(description="A class of the project's label schema")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, description="Free attributes (occluded, truncated, ...)"
    )
    score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="A model's confidence: set on a pre-annotation, absent on a person's",
    )


class BoundingBox(_Shape):
    """An axis-aligned box: `bbox` is [x, y, width, height] from the top-left corner."""

    type: Literal["bounding_box"] = "bounding_box"
    bbox: tuple[float, float, float, float]

    @field_validator("bbox")
    @classmethod
    def _valid_box(cls, bbox: tuple[float, float, float, float]) -> tuple[float, ...]:
        _finite(bbox)
        if bbox[2] < 0 or bbox[3] < 0:
            raise ValueError("width and height must not be negative")
        return bbox


class Polygon(_Shape):
    """A closed polygon: its vertices [[x, y], ...] in order, at least three."""

    type: Literal["polygon"] = "polygon"
    points: list[tuple[float, float]] = Field(min_length=3)

    @field_validator("points")
    @classmethod
    def _finite_points(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        _finite(value for point in points for value in point)
        return points


Keypoint: TypeAlias = tuple[float, float, Literal[0, 1, 2]]
"""[x, y, visibility]: 0 not labelled, 1 labelled but hidden, 2 visible (COCO's flags)."""


class Keypoints(_Shape):
    """The keypoints of one object, in the order of its class's keypoint names."""

    type: Literal["keypoints"] = "keypoints"
    points: list[Keypoint] = Field(min_length=1)

    @field_validator("points")
    @classmethod
    def _finite_points(cls, points: list[Keypoint]) -> list[Keypoint]:
        _finite(value for point in points for value in point[:2])
        return points


class Classification(_Shape):
    """A label of the whole image."""

    type: Literal["classification"] = "classification"


Annotation = Annotated[
    BoundingBox | Polygon | Keypoints | Classification, Field(discriminator="type")
]


class DMImage(BaseModel):
    """One image: its file name (the original file's), pixel size and annotations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_name: _Text
    width: int = Field(gt=0, le=1_000_000)
    height: int = Field(gt=0, le=1_000_000)
    annotations: list[Annotation] = Field(default_factory=list)

    @field_validator("annotations")
    @classmethod
    def _unique_ids(cls, annotations: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for annotation in annotations:
            if annotation.id in seen:
                raise ValueError(f"annotation id {annotation.id!r} is used twice")
            seen.add(annotation.id)
        return annotations


class DMData(BaseModel):
    """The `data` of a task, an assignment or a ground-truth item: its images' annotations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dm_version: Literal["1.0"] = "1.0"  # DM_SCHEMA_VERSION
    images: list[DMImage] = Field(default_factory=list)


_DM_ADAPTER = TypeAdapter(DMData)


def parse_dm(value: object) -> DMData:
    """Validate a JSON value (a dict, or JSON text/bytes) as DM; raises pydantic's error."""
    if isinstance(value, str | bytes):
        return _DM_ADAPTER.validate_json(value)
    return _DM_ADAPTER.validate_python(value)


def class_names(images: Iterable[DMImage]) -> list[str]:
    """The sorted distinct class names the images use: a label schema when none is given."""
    return sorted({a.class_name for image in images for a in image.annotations})
