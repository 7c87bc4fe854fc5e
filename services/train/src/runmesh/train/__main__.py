"""`python -m runmesh.train`: the train service (a worker for the neural_net category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category

CATEGORY = "neural_net"


def main(settings: Settings | None = None) -> None:
    """Serve the category; built-in plugins join in their own issues."""
    serve_category(CATEGORY, service="train", settings=settings)


if __name__ == "__main__":
    main()
