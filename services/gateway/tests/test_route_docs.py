"""Every route the gateway serves is in docs/gateway.md's endpoint table, and every row of the
table is a route: the OpenAPI document and the docs cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from runmesh.core.settings import Settings
from runmesh.gateway.app import create_app

DOC = Path(__file__).resolve().parents[3] / "docs" / "gateway.md"
_ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `(/[^`]*)` \|", re.MULTILINE)


def test_the_endpoint_table_lists_every_route_and_nothing_else() -> None:
    spec = create_app(Settings()).openapi()  # no lifespan: nothing is opened
    served = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    documented = set(_ROW.findall(DOC.read_text(encoding="utf-8")))
    assert len(served) > 40, sorted(served)
    assert sorted(served - documented) == [], "routes missing from docs/gateway.md"
    assert sorted(documented - served) == [], "rows of docs/gateway.md that are no route"
