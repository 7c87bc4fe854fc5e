"""The `Tenant` dependency: every route that touches data knows whose data it may touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Unauthorized

# Declared for OpenAPI (the docs page can then send a token); the errors stay ours.
_bearer = HTTPBearer(
    auto_error=False, description="An API token: `runmesh token create --tenant T` prints one"
)


@dataclass(slots=True, frozen=True)
class Caller:
    """An authenticated caller: its tenant, and the token a long-lived answer re-checks."""

    tenant: str
    token: str


async def require_caller(
    deps: Annotated[Deps, Depends(get_deps)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller from `Authorization: Bearer <token>`, or 401."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthorized("send an API token as `Authorization: Bearer <token>`")
    tenant = await deps.tokens.lookup(token)
    if tenant is None:
        raise Unauthorized("the API token is unknown or revoked")
    return Caller(tenant=tenant, token=token)


async def require_tenant(caller: Annotated[Caller, Depends(require_caller)]) -> str:
    """The caller's tenant from `Authorization: Bearer <token>`, or 401."""
    return caller.tenant


Tenant = Annotated[str, Depends(require_tenant)]
"""A route parameter typed `Tenant` receives the authenticated caller's tenant."""

AuthenticatedCaller = Annotated[Caller, Depends(require_caller)]
"""A route parameter typed `AuthenticatedCaller` receives the tenant and its token (a stream
that must end when the token is revoked)."""
