"""runmesh train service: the built-in neural_net plugin (train, inference, test) and the small
CPU detector it trains (`runmesh.train.model`)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-train` plugin."""
