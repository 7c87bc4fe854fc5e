"""The dashboard's static files: served from the package, open, strictly fenced, revalidated.

(The page itself is tested end to end in Chromium by tests/test_dashboard.py.)
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import AsyncIterator
from importlib import resources

import httpx
import pytest
from fastapi import FastAPI

from runmesh.gateway.problems import install_problem_handlers
from runmesh.gateway.routes import dashboard


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard router alone (it needs no database), over ASGI."""
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(dashboard.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def test_the_files_ship_inside_the_package() -> None:
    folder = resources.files("runmesh.gateway").joinpath("dashboard")
    assert {entry.name for entry in folder.iterdir()} >= {
        "index.html",
        "main.js",
        "style.css",
        "favicon.svg",
        "views",
        "vendor",
    }
    assert set(dashboard.assets()) >= {
        "views/run/page.js",
        "vendor/uPlot.esm.js",
        "vendor/uPlot.min.css",
    }


async def test_the_page_is_open_fenced_and_revalidated(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    # every file the page names is served, from this origin only
    for path in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', page.text):
        assert (await client.get(path)).status_code == 200, path
    assert "http://" not in page.text and "https://" not in page.text  # no CDN

    again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and not again.content


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/dashboard/main.js", "text/javascript; charset=utf-8"),
        ("/dashboard/views/run/page.js", "text/javascript; charset=utf-8"),
        ("/dashboard/vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
        ("/dashboard/vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_media_types(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/index.html",
        "/dashboard/nope.js",
        "/dashboard/app.js",  # the single script before the modules
        "/dashboard/..%2Fapp.py",
        "/dashboard/views/..%2F..%2Fapp.py",
        "/dashboard/vendor/README.md",  # only pages, modules, style sheets and icons
        "/dashboard/vendor/uPlot.LICENSE",
        "/dashboard/views",
    ],
)
async def test_other_names_are_not_found(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


IMPORT = re.compile(r'^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', re.MULTILINE)


async def test_every_module_the_page_imports_is_served_as_javascript(
    client: httpx.AsyncClient,
) -> None:
    """Follow the static imports from the entry module: none is missing or mistyped (a
    browser refuses a module script served with any other media type), and every module
    in the package is reached (none is left over)."""
    page = (await client.get("/")).text
    pending = re.findall(r'<script type="module" src="([^"]+)"', page)
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
        for target in IMPORT.findall(response.text):
            assert target.startswith(("./", "../")), f"{path} imports {target}: not relative"
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), target)))
    modules = {f"/dashboard/{name}" for name in dashboard.assets() if name.endswith(".js")}
    assert seen == modules


async def test_the_dashboard_is_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).json()["paths"] == {}
