"""`/v1/limits`: the caller's tenant limits and how much of them its runs use (read-only: an
operator sets them with `runmesh limits set`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.gateway.tenant_limits import all_limits, usage_of

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)


class LimitOut(BaseModel):
    """One limit of the tenant, with what its runs use of it now."""

    category: str = Field(description="`*` = over all its categories")
    max_running: int | None = Field(description="Runs under way at once; null = any number")
    max_queued: int | None = Field(description="Runs queued at once; null = any number")
    running: int = Field(description="Its runs under way now (sent to a worker, not ended)")
    queued: int = Field(description="Its runs queued now (held back ones included)")


class LimitList(BaseModel):
    """The tenant's limits; none = no limit."""

    items: list[LimitOut]


@router.get(
    "/limits",
    response_model=LimitList,
    summary="The tenant's limits",
    tags=["limits"],
    responses=problems(401),
)
async def list_limits(tenant: Tenant, deps: Annotated[Deps, Depends(get_deps)]) -> LimitList:
    """Limits on the caller's runs under way and queued, and its use of them now. A run over
    `max_running` waits queued (its `queue.reason` says so); a submission over `max_queued`
    is refused with 429 and `Retry-After`."""
    limits = await all_limits(deps.pool, tenant)
    usage = await usage_of(deps.pool, tenant)
    return LimitList(
        items=[
            LimitOut(
                category=limit.category,
                max_running=limit.max_running,
                max_queued=limit.max_queued,
                running=usage.count(usage.under_way, limit.category),
                queued=usage.count(usage.queued, limit.category),
            )
            for limit in limits
        ]
    )
