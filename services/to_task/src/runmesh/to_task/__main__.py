"""`python -m runmesh.to_task`: the to_task service (a worker for the pre_annotation category)."""

from __future__ import annotations

from runmesh.common.settings import Settings
from runmesh.common.worker import main as serve_category
from runmesh.to_task import BUILTIN_PLUGIN

# The category of the Synapse pre_annotation plugins, as `runmesh dev` maps it to this service
# (runmesh.cli.services.CATEGORY_SERVICES).
CATEGORY = "pre_annotation"


def main(settings: Settings | None = None) -> None:
    """Serve the category with the built-in `runmesh-to-task` plugin."""
    serve_category(CATEGORY, service="to_task", builtin_plugins=[BUILTIN_PLUGIN], settings=settings)


if __name__ == "__main__":
    main()
