"""runmesh to_task service: the built-in to_task plugin, `BaseToTask` and its pipeline."""

from __future__ import annotations

from pathlib import Path

from runmesh.worker.service import Service

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-to-task` plugin."""

service = Service("to_task", (BUILTIN_PLUGIN,))
"""The to_task service: `python -m runmesh.to_task`, `runmesh worker runmesh.to_task:service`."""
