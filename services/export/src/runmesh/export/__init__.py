"""runmesh export service: the built-in export plugin, `BaseExporter` and its pipeline."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-export` plugin."""
