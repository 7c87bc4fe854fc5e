"""`python -m tools.schemas [--check] [DIR]`: (re)write the generated docs, or list the stale
ones and exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.schemas.files import stale_docs, write_docs


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tools.schemas [--check] [DIR]`; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.schemas",
        description="Generate docs/schemas/*.schema.json, docs/asyncapi.yaml and "
        "docs/events.md from the wire models in runmesh.core.events.",
    )
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path("docs"), help="default: ./docs"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory
    stale = stale_docs(directory)
    if args.check:
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run `make schemas` to regenerate them", file=sys.stderr)
            return 1
        return 0
    write_docs(directory)
    for path in stale:
        print(f"wrote {path}")
    if not stale:
        print(f"{directory}: up to date")
    return 0
