"""Params of the to_task action (the Synapse pre_annotation contract, `file` method)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

AnnotationFormat: TypeAlias = Literal["auto", "dm", "coco", "yolo", "pascal_voc"]


class TaskFilters(BaseModel):
    """Which data units of the project's collection become tasks."""

    model_config = ConfigDict(extra="forbid")

    data_unit_ids: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Only these data units (all of the collection when absent)",
    )
    meta: dict[str, JsonValue] | None = Field(
        default=None,
        description="Only units whose meta holds these keys with these values (JSON "
        "containment: nested objects match as subsets)",
    )
    created_after: AwareDatetime | None = Field(
        default=None, description="Only units created at or after this time"
    )
    created_before: AwareDatetime | None = Field(
        default=None, description="Only units created before this time"
    )
    only_without_tasks: bool = Field(
        default=False,
        description="Only units without a task, or whose task has no annotations yet (so a "
        "retried attempt still fills the tasks the first attempt created)",
    )

    @model_validator(mode="after")
    def _ordered_range(self) -> TaskFilters:
        if (
            self.created_after is not None
            and self.created_before is not None
            and self.created_after >= self.created_before
        ):
            raise ValueError("created_after must be before created_before")
        return self


class ToTaskParams(BaseModel):
    """Create a project's tasks and pre-annotate them from each data unit's annotation file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name of this run")
    description: str | None = Field(default=None, max_length=2000)
    project: uuid.UUID = Field(description="The project whose tasks are created (catalog)")
    task_filters: TaskFilters = Field(default_factory=TaskFilters)
    method: Literal["file", "inference"] = Field(
        default="file",
        description="`file`: annotations come from a file of each data unit; `inference`: a "
        "registered model's predictions (a neural_net `inference` run), with their scores",
    )
    target_specification_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="`file`: the file specification of the collection that holds the "
        "annotation files",
    )
    annotation_format: AnnotationFormat = Field(
        default="auto", description="auto (by extension and content), dm, coco, yolo, pascal_voc"
    )
    model: uuid.UUID | None = Field(
        default=None, description="`inference`: the registered model to predict with"
    )
    confidence_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="`inference`: keep predictions scoring this much"
    )
    max_detections: int = Field(
        default=100, ge=1, le=10_000, description="`inference`: predictions kept per image"
    )
    inference_timeout_s: float = Field(
        default=3600, gt=0, le=86_400, description="`inference`: how long the model run may take"
    )
    overwrite: bool = Field(
        default=False,
        description="Replace the annotations of tasks that have some (else they are skipped)",
    )
    batch_size: int = Field(
        default=100, ge=1, le=1000, description="Units per task-creation and save batch"
    )
    max_concurrency: int = Field(default=8, ge=1, le=128, description="Files read at once")

    @model_validator(mode="after")
    def _method_needs(self) -> ToTaskParams:
        if self.method == "file" and self.target_specification_name is None:
            raise ValueError("method 'file' needs target_specification_name")
        if self.method == "inference" and self.model is None:
            raise ValueError("method 'inference' needs model (a registered model id)")
        return self
