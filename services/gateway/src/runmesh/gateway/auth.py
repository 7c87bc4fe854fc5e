"""The `Tenant` dependency: every route that touches data knows whose data it may touch."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Unauthorized


async def require_tenant(request: Request, deps: Annotated[Deps, Depends(get_deps)]) -> str:
    """The caller's tenant from `Authorization: Bearer <token>`, or 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send an API token as `Authorization: Bearer <token>`")
    tenant = await deps.tokens.lookup(token.strip())
    if tenant is None:
        raise Unauthorized("the API token is unknown or revoked")
    return tenant


Tenant = Annotated[str, Depends(require_tenant)]
"""A route parameter typed `Tenant` receives the authenticated caller's tenant."""
