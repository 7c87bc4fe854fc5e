"""`python -m runmesh.upload`: the upload service (a worker for the upload category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category

CATEGORY = "upload"


def main(settings: Settings | None = None) -> None:
    """Serve the category; built-in plugins join in their own issues."""
    serve_category(CATEGORY, service="upload", settings=settings)


if __name__ == "__main__":
    main()
