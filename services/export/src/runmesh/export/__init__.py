"""runmesh export service: the built-in export plugin, `BaseExporter` and its pipeline."""

from __future__ import annotations

from pathlib import Path

from runmesh.worker.service import Service

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-export` plugin."""

service = Service("export", (BUILTIN_PLUGIN,))
"""The export service: `python -m runmesh.export`, `runmesh worker runmesh.export:service`."""
