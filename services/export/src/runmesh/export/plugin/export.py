"""The built-in export action: `BaseExporter` as it is."""

from __future__ import annotations

from runmesh.export.exporter import BaseExporter


class Export(BaseExporter):
    """Export annotations (see `runmesh.export.exporter.BaseExporter`)."""
