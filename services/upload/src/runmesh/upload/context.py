"""What the upload steps share: the params, the open resources, and what each step found."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runmesh.core.settings import Settings
from runmesh.pipeline import Counts
from runmesh.plugins import Run
from runmesh.upload.params import UploadParams

if TYPE_CHECKING:
    import asyncpg

    from runmesh.catalog.repository import DataCollectionRow, DataFile, FileSpecification
    from runmesh.storage import ObjectInfo, Storage


@dataclass(slots=True)
class SourceFile:
    """One discovered file: where it is, how big, and which specification it answers."""

    path: str  # in the source storage
    size: int
    spec: str | None = None
    unit_key: str = ""  # the stem that groups files into a unit (with its subfolder)


class UploadHooks(Protocol):
    """The points a user plugin can override (the BaseUploader template hooks)."""

    def organize_files(self, units: list[PlannedUnit]) -> list[PlannedUnit]:
        """Adjust the grouped units before validation."""
        ...

    def validate_files(self, unit: PlannedUnit) -> str | None:
        """An extra check of one unit: the reason it is invalid, or None."""
        ...

    def before_upload(self, file: SourceFile) -> None:
        """Called before a file is copied."""
        ...

    def after_upload(self, file: SourceFile, stored: ObjectInfo) -> None:
        """Called after a file was copied (or found already there)."""
        ...


@dataclass(slots=True)
class PlannedUnit:
    """A data unit to create: its files by specification and its meta."""

    key: str
    files: dict[str, SourceFile]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Failure:
    """A file or unit left out, and why (reported in the result, never silently dropped)."""

    item: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON form for the result."""
        return {"item": self.item, "reason": self.reason}


@dataclass(slots=True)
class UploadContext:
    """State passed from step to step; each step fills what the next ones read.

    The pool and both storages are open before the first step and closed after the last.
    """

    params: UploadParams
    run: Run
    tenant: str
    settings: Settings
    run_id: uuid.UUID
    pool: asyncpg.Pool
    source: Storage
    source_name: str  # the source storage's name, for people
    destination: Storage  # the run's objects go under `destination_prefix` in it
    hooks: UploadHooks | None = None
    collection: DataCollectionRow | None = None
    specs: dict[str, FileSpecification] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # file stem → meta
    excluded_paths: set[str] = field(default_factory=set)  # source files that are not data
    discovered: list[SourceFile] = field(default_factory=list)
    units: list[PlannedUnit] = field(default_factory=list)
    failed_files: list[Failure] = field(default_factory=list)
    failed_units: list[Failure] = field(default_factory=list)
    # (unit key, spec) → {uri, size, checksum, media_type} of the uploaded copy
    uploaded: dict[tuple[str, str], DataFile] = field(default_factory=dict)
    skipped_present: int = 0  # already uploaded by an earlier attempt (same checksum)
    unit_ids: list[int] = field(default_factory=list)
    data_files: Counts = field(default_factory=Counts)
    data_units: Counts = field(default_factory=Counts)

    @property
    def destination_prefix(self) -> str:
        """`<tenant>/<collection>/<run_id>`: where this run's objects go."""
        return f"{self.tenant}/{self.params.data_collection}/{self.run_id}"

    def report_metrics(self) -> None:
        """Send both metrics categories as they stand."""
        self.run.set_metrics(self.data_files.as_metrics(), category="data_file")
        self.run.set_metrics(self.data_units.as_metrics(), category="data_unit")
