"""The dashboard: one static page (HTML, JS modules, CSS) that reads everything from `/v1`.

The files ship inside the package (`runmesh/gateway/dashboard/`; hatchling puts every file of
`src/runmesh` in the wheel) and are read once through `importlib.resources`: the page, its
style sheets, its icon and its native ES modules (`main.js` and what it imports, in folders
such as `views/` and `vendor/`), served as `text/javascript` as module scripts require. Only
files of those kinds under that folder are served, by their exact relative path. They hold no
data, so they are served without auth; the page asks for an API token and sends it as
`Authorization: Bearer` on every API call, streams included (it reads SSE with `fetch`, as
EventSource cannot send headers).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from typing import Final

from fastapi import APIRouter, Request, Response

from runmesh.gateway.errors import NotFound
from runmesh.gateway.routes.support import MeasuredRoute

router = APIRouter(include_in_schema=False, route_class=MeasuredRoute)

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Everything from this origin only: no inline script or style, no third party."""

PAGE: Final = "index.html"

_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(slots=True, frozen=True)
class Asset:
    """One dashboard file in memory, with its validator."""

    body: bytes
    media_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


@functools.cache
def assets() -> dict[str, Traversable]:
    """Every servable dashboard file by its path under `dashboard/` (`views/run/page.js`)."""
    folder = resources.files("runmesh.gateway").joinpath("dashboard")
    return {
        path: entry
        for path, entry in _walk(folder, "")
        if PurePosixPath(path).suffix in _MEDIA_TYPES
    }


@functools.cache
def _asset(path: str) -> Asset:
    body = assets()[path].read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, _MEDIA_TYPES[PurePosixPath(path).suffix], etag)


def _serve(name: str, request: Request) -> Response:
    asset = _asset(name)
    headers = {
        # Revalidate every time (the ETag makes that a 304): a new gateway's page is never stale.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def dashboard(request: Request) -> Response:
    """The dashboard page (routes are in the URL's fragment: `#/runs`, `#/plugins`, ...)."""
    return _serve(PAGE, request)


@router.get("/dashboard/{path:path}")
async def dashboard_asset(path: str, request: Request) -> Response:
    """The page's modules, style sheets and icon (files of the package's `dashboard/` only)."""
    if path == PAGE or path not in assets():
        raise NotFound(f"no dashboard file {path!r}")
    return _serve(path, request)
