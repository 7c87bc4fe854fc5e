"""What the export steps share: the params, the open resources, and what each step found."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runmesh.core.settings import Settings
from runmesh.export.params import ExportParams
from runmesh.pipeline import Counts
from runmesh.plugins import Run

if TYPE_CHECKING:
    import asyncpg

    from runmesh.converters import DatasetWriter
    from runmesh.storage import Storage, TenantUris

ItemData = dict[str, Any]
"""An item as the hooks see it: {id, data (DM JSON), files, meta, data_unit_id} (Synapse's)."""


class ExportHooks(Protocol):
    """The points a user exporter overrides (the Synapse BaseExporter template methods)."""

    def before_convert(self, data: ItemData) -> ItemData:
        """Prepare an item before conversion."""
        ...

    def convert_data(self, data: ItemData) -> ItemData:
        """Turn an item's data into what is saved."""
        ...

    def after_convert(self, data: ItemData) -> ItemData | None:
        """Post-process a converted item; None skips it."""
        ...

    def make_writer(self, root: Path, classes: list[str]) -> DatasetWriter:
        """The writer of the output format, for one split's folder."""
        ...

    def additional_file_saving(self, ctx: ExportContext) -> None:
        """Write extra files into `ctx.staging` once every item is saved."""
        ...


@dataclass(slots=True)
class ExportContext:
    """State passed from step to step; each step fills what the next ones read.

    The pool, the destination, the tenant's URIs and the staging folder are open before the
    first step and closed (the folder deleted) after the last.
    """

    params: ExportParams
    run: Run
    tenant: str
    settings: Settings
    run_id: uuid.UUID
    hooks: ExportHooks
    staging: Path  # local folder the files are written to before they are stored
    pool: asyncpg.Pool
    destination: Storage
    destination_name: str  # the destination storage's name, for people
    uris: TenantUris  # opens original files through the tenant's storages
    classes: list[str] = field(default_factory=list)
    total: int = 0
    export_dir: str = ""  # in the destination storage: `<path>/<name>` or `<name>(n)`
    writers: dict[str, DatasetWriter] = field(default_factory=dict)  # by split ("" = none)
    json_errors: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    original_errors: list[tuple[str, str]] = field(default_factory=list)
    conversion_issues: int = 0
    skipped: int = 0
    data_files: Counts = field(default_factory=Counts)
    original_files: Counts = field(default_factory=Counts)

    def report_metrics(self) -> None:
        """Send both metrics categories as they stand."""
        self.run.set_metrics(self.data_files.as_metrics(), category="data_file")
        self.run.set_metrics(self.original_files.as_metrics(), category="original_file")
