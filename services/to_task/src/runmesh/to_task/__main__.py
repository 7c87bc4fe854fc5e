"""`python -m runmesh.to_task`: the to_task service (a worker for the pre_annotation category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category

CATEGORY = "pre_annotation"


def main(settings: Settings | None = None) -> None:
    """Serve the category; built-in plugins join in their own issues."""
    serve_category(CATEGORY, service="to_task", settings=settings)


if __name__ == "__main__":
    main()
