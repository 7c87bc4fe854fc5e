"""The dashboard: one static page (HTML, JS, CSS) that reads everything from `/v1` with a token.

The files ship inside the package (`runmesh/gateway/dashboard/`; hatchling puts every file of
`src/runmesh` in the wheel) and are read once through `importlib.resources`. They hold no
data, so they are served without auth; the page asks for an API token and sends it as
`Authorization: Bearer` on every API call, streams included (it reads SSE with `fetch`, as
EventSource cannot send headers).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
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

_ASSETS: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@dataclass(slots=True, frozen=True)
class Asset:
    """One dashboard file in memory, with its validator."""

    body: bytes
    media_type: str
    etag: str


@functools.cache
def _asset(name: str) -> Asset:
    body = resources.files("runmesh.gateway").joinpath("dashboard", name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, _ASSETS[name], etag)


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
    return _serve("index.html", request)


@router.get("/dashboard/{name}")
async def dashboard_asset(name: str, request: Request) -> Response:
    """The page's script, style sheet and icon (only those names)."""
    if name not in _ASSETS or name == "index.html":
        raise NotFound(f"no dashboard file {name!r}")
    return _serve(name, request)
