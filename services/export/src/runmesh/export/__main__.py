"""`python -m runmesh.export`: the export service (a worker for the export category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category

CATEGORY = "export"


def main(settings: Settings | None = None) -> None:
    """Serve the category; built-in plugins join in their own issues."""
    serve_category(CATEGORY, service="export", settings=settings)


if __name__ == "__main__":
    main()
