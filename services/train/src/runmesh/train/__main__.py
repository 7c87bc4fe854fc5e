"""`python -m runmesh.train`: the train service (a worker for the neural_net category)."""

from __future__ import annotations

from runmesh.common.worker import main as serve_category

CATEGORY = "neural_net"


def main() -> None:
    """Serve the category; built-in plugins join in their own issues."""
    serve_category(CATEGORY, service="train")


if __name__ == "__main__":
    main()
