"""Params of the to_task action (the Synapse pre_annotation contract, `file` method)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    only_without_tasks: bool = Field(
        default=False,
        description="Only units without a task, or whose task has no annotations yet (so a "
        "retried attempt still fills the tasks the first attempt created)",
    )


class ToTaskParams(BaseModel):
    """Create a project's tasks and pre-annotate them from each data unit's annotation file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name of this run")
    description: str | None = Field(default=None, max_length=2000)
    project: uuid.UUID = Field(description="The project whose tasks are created (catalog)")
    task_filters: TaskFilters = Field(default_factory=TaskFilters)
    method: Literal["file"] = Field(
        default="file",
        description="`file`: annotations come from a file of each data unit. `inference` (a "
        "model's predictions) comes with the train service",
    )
    target_specification_name: str = Field(
        min_length=1,
        max_length=200,
        description="The file specification of the collection that holds the annotation files",
    )
    annotation_format: AnnotationFormat = Field(
        default="auto", description="auto (by extension and content), dm, coco, yolo, pascal_voc"
    )
    overwrite: bool = Field(
        default=False,
        description="Replace the annotations of tasks that have some (else they are skipped)",
    )
    batch_size: int = Field(
        default=100, ge=1, le=1000, description="Units per task-creation and save batch"
    )
    max_concurrency: int = Field(default=8, ge=1, le=128, description="Files read at once")

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, value: object) -> object:
        # A message of its own: pydantic's "Input should be 'file'" hides why.
        if value == "inference":
            raise ValueError(
                "method 'inference' is not available yet: it comes with the train service "
                "(model inference); use 'file'"
            )
        return value
