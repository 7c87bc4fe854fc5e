"""`python -m runmesh.common.worker --category C`: a worker for user plugins of any category."""

from __future__ import annotations

import argparse

from runmesh.common.worker.service import main as serve_category


def main() -> None:
    """Serve the plugins on `RUNMESH_PLUGIN_PATH` for one category."""
    parser = argparse.ArgumentParser(prog="python -m runmesh.common.worker", description=__doc__)
    parser.add_argument("--category", required=True, help="category whose requests to consume")
    parser.add_argument("--service", help="service name in events and metrics")
    args = parser.parse_args()
    serve_category(args.category, service=args.service)


if __name__ == "__main__":
    main()
