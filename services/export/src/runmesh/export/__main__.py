"""`python -m runmesh.export`: the export service (a worker for the export category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category
from runmesh.export import BUILTIN_PLUGIN

CATEGORY = "export"


def main(settings: Settings | None = None) -> None:
    """Serve the category with the built-in `runmesh-export` plugin."""
    serve_category(CATEGORY, service="export", builtin_plugins=[BUILTIN_PLUGIN], settings=settings)


if __name__ == "__main__":
    main()
