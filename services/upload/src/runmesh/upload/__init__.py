"""runmesh upload service: the built-in upload plugin and its pipeline (DESIGN §6 to §8)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-upload` plugin."""
