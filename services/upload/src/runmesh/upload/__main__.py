"""`python -m runmesh.upload`: the upload service (a worker for the upload category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category
from runmesh.upload import BUILTIN_PLUGIN

CATEGORY = "upload"


def main(settings: Settings | None = None) -> None:
    """Serve the category with the built-in `runmesh-upload` plugin."""
    serve_category(CATEGORY, service="upload", builtin_plugins=[BUILTIN_PLUGIN], settings=settings)


if __name__ == "__main__":
    main()
