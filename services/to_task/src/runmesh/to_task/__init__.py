"""runmesh to_task service: the built-in to_task plugin, `BaseToTask` and its pipeline."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-to-task` plugin."""
