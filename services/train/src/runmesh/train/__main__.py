"""`python -m runmesh.train`: the train service (a worker for the neural_net category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category
from runmesh.train import BUILTIN_PLUGIN

CATEGORY = "neural_net"


def main(settings: Settings | None = None) -> None:
    """Serve the category with the built-in `runmesh-train` plugin."""
    serve_category(CATEGORY, service="train", builtin_plugins=[BUILTIN_PLUGIN], settings=settings)


if __name__ == "__main__":
    main()
