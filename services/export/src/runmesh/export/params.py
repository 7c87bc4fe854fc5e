"""Params of the export action (the Synapse export contract, with filters checked per target)."""

from __future__ import annotations

import math
import uuid
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from runmesh.catalog.models import ExportTarget, parse_export_filter
from runmesh.core.validation import describe_errors

OutputFormat: TypeAlias = Literal["dm", "coco", "yolo", "pascal_voc"]
Split: TypeAlias = Literal["train", "valid", "test"]


class ExtraParams(BaseModel):
    """Format options: the output format and an optional train/valid/test split."""

    model_config = ConfigDict(extra="forbid")

    output_format: OutputFormat = Field(default="dm", description="dm, coco, yolo, pascal_voc")
    split: dict[Split, float] | None = Field(
        default=None,
        description="Ratios per split, e.g. {train: 0.8, valid: 0.2}; items are assigned by "
        "a hash of their id, so a re-executed run splits them the same way",
    )

    @field_validator("split")
    @classmethod
    def _ratios(cls, split: dict[Split, float] | None) -> dict[Split, float] | None:
        if split is None:
            return None
        if not split or any(not 0 < ratio <= 1 for ratio in split.values()):
            raise ValueError("each ratio must be in (0, 1]")
        if not math.isclose(sum(split.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"ratios must sum to 1, not {sum(split.values()):g}")
        return split


class ExportParams(BaseModel):
    """Export annotations of tasks, assignments or ground truth into a storage."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name of the export folder")
    description: str | None = Field(default=None, max_length=2000)
    storage: uuid.UUID = Field(description="Destination storage id (catalog)")
    target: ExportTarget
    filter: dict[str, Any] = Field(
        description="task/assignment: {project, status?}; ground_truth: "
        "{ground_truth_dataset_version}"
    )
    path: str = Field(default="", max_length=1000, description="Folder in the storage")
    save_original_file: bool = Field(default=True, description="Copy each image as well")
    extra_params: ExtraParams = Field(default_factory=ExtraParams)
    max_concurrency: int = Field(default=16, ge=1, le=128, description="Files copied at once")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        value = value.strip()
        if not value or value in (".", "..") or any(c in value for c in "/\\\x00"):
            raise ValueError("must be a folder name (no slashes)")
        return value

    @field_validator("filter")
    @classmethod
    def _filter_fits_target(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Checked per target, so the error names what *this* target needs.
        target = info.data.get("target")
        if target is None:
            return value  # the target's own error is reported
        try:
            checked = parse_export_filter(target, value)
        except ValidationError as exc:
            raise ValueError(f"for target {target!r}: {describe_errors(exc.errors())}") from None
        return checked.model_dump(mode="json", exclude_none=True)
