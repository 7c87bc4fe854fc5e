"""`/v1/workers`: the live workers, what they serve and how busy they are (read-only: workers
announce themselves on `runmesh.workers`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.gateway.worker_presence import live_workers

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]


class WorkerOut(BaseModel):
    """A live worker of one category (a process serving several shows once per category)."""

    model_config = ConfigDict(from_attributes=True)

    worker: str = Field(description="Its id: the `worker` of the events of its runs")
    category: str
    service: str
    pool: str
    labels: list[str]
    slots: int = Field(description="Runs it executes at once")
    busy: int = Field(description="Runs it holds now (as of `last_seen`)")
    gpus: int = Field(default=0, description="GPUs it offers runs")
    memory_mb: int = Field(default=0, description="Memory it offers runs, MiB")
    state: str = Field(description="`serving`, or `stopping` (draining: takes no new run)")
    started_at: datetime
    last_seen: datetime = Field(description="Its latest announcement")


class WorkerList(BaseModel):
    """The live workers, by category, pool and id."""

    items: list[WorkerOut]


@router.get(
    "/workers",
    response_model=WorkerList,
    summary="List live workers",
    tags=["workers"],
    responses=problems(401, 422),
)
async def list_workers(
    tenant: Tenant,
    deps: DepsParam,
    category: Annotated[
        str | None, Query(max_length=200, description="Only those serving this category")
    ] = None,
    pool: Annotated[
        str | None, Query(max_length=200, description="Only those of this pool")
    ] = None,
) -> WorkerList:
    """The workers that announced themselves within their last three heartbeats and have
    not stopped. Every tenant sees the same workers: they serve every tenant's runs."""
    del tenant  # authenticated; the answer is the same for every tenant
    rows = await live_workers(deps.pool, deps.topics.prefix, category=category, pool=pool)
    return WorkerList(items=[WorkerOut.model_validate(row) for row in rows])
