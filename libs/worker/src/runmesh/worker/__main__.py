"""`python -m runmesh.worker SERVICE` or `--category C[,C2,...]`: run a category service.

`SERVICE` names a declared `Service` (`runmesh.upload:service`); `--category C` runs a worker
with no built-in plugin, serving category `C`'s plugins on `RUNMESH_PLUGIN_PATH` and its
published versions; several comma-separated categories are served by one process.
"""

from __future__ import annotations

import argparse
import sys

from runmesh.core.errors import RunmeshError
from runmesh.worker.process import main as serve_category
from runmesh.worker.service import load_service


def main() -> None:
    """Serve a declared service, or the plugin-path plugins of one category."""
    parser = argparse.ArgumentParser(prog="python -m runmesh.worker", description=__doc__)
    parser.add_argument("service", nargs="?", help="a declared service: module:attribute")
    parser.add_argument(
        "--category",
        help="serve these categories (comma-separated): their RUNMESH_PLUGIN_PATH plugins and "
        "published versions",
    )
    parser.add_argument("--service", dest="name", help="service name in events and metrics")
    args = parser.parse_args()
    if (args.service is None) == (args.category is None):
        parser.error("name a service (module:attribute) or a --category, not both")
    if args.service is not None:
        try:
            service = load_service(args.service)
        except RunmeshError as exc:
            print(f"runmesh worker: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        service.main()
    else:
        categories = [each.strip() for each in args.category.split(",") if each.strip()]
        serve_category(categories, service=args.name)


if __name__ == "__main__":
    main()
