"""runmesh train service: the built-in neural_net plugin (train, inference, test) and the small
CPU detector it trains (`runmesh.train.model`)."""

from __future__ import annotations

from pathlib import Path

from runmesh.worker.service import Service

BUILTIN_PLUGIN = Path(__file__).parent / "plugin"
"""The directory of the built-in `runmesh-train` plugin."""

service = Service("train", (BUILTIN_PLUGIN,))
"""The train service: `python -m runmesh.train`, `runmesh worker runmesh.train:service`."""
