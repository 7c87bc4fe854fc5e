"""What the to_task steps share: the params, the open resources, and what each step found."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runmesh.core.settings import Settings
from runmesh.pipeline import Counts
from runmesh.plugins import Run
from runmesh.to_task.params import ToTaskParams

if TYPE_CHECKING:
    import asyncpg

    from runmesh.catalog.repository import DataCollectionRow, DataFile
    from runmesh.dm import DMData
    from runmesh.storage import TenantUris


@dataclass(slots=True, frozen=True)
class Item:
    """One data unit to annotate and its task."""

    data_unit_id: int
    task_id: int
    files: dict[str, DataFile]
    has_data: bool  # the task held annotations when the run began


@dataclass(slots=True, frozen=True)
class Annotated:
    """A task's new DM data, ready to save."""

    data_unit_id: int
    task_id: int
    data: DMData
    had_data: bool


@dataclass(slots=True, frozen=True)
class Failure:
    """A data unit that could not be annotated, and why."""

    data_unit_id: int
    reason: str


@dataclass(slots=True)
class ToTaskContext:
    """State passed from step to step; each step fills what the next ones read.

    The pool and the tenant's URIs are open before the first step and closed after the last.
    """

    params: ToTaskParams
    run: Run
    tenant: str
    settings: Settings
    run_id: uuid.UUID
    pool: asyncpg.Pool
    uris: TenantUris  # opens units' files and the predictions through the tenant's storages
    collection: DataCollectionRow | None = None
    primary_spec: str = ""
    classes: list[str] = field(default_factory=list)  # by label-schema id order (YOLO ids)
    items: list[Item] = field(default_factory=list)
    annotated: list[Annotated] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    saved_task_ids: list[int] = field(default_factory=list)  # written by this run, empty before
    to_predict: list[Item] = field(default_factory=list)  # inference: the units to run on
    images_uri: str | None = None  # inference: the list of their images, in the bucket
    tasks_created: int = 0
    skipped: int = 0
    counts: Counts = field(default_factory=Counts)

    def fail(self, data_unit_id: int, reason: str) -> None:
        """Record a per-item failure; the run goes on."""
        self.failures.append(Failure(data_unit_id, reason))
        self.counts.failed += 1

    def report_metrics(self) -> None:
        """Send the `annotation` metrics as they stand."""
        self.run.set_metrics(self.counts.as_metrics(), category="annotation")
