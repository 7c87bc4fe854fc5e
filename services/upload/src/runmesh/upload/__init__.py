"""runmesh upload service: the built-in upload plugin and its pipeline (DESIGN §6 to §8)."""

from __future__ import annotations

from pathlib import Path

from runmesh.worker.service import Service

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-upload` plugin."""

service = Service("upload", (BUILTIN_PLUGIN,))
"""The upload service: `python -m runmesh.upload`, `runmesh worker runmesh.upload:service`."""
