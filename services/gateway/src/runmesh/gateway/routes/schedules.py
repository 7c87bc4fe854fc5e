"""`/v1/schedules`: runs and pipelines submitted at each tick of a cron expression."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, NotFound
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.gateway.schedules import store
from runmesh.gateway.schedules.spec import ScheduleIn, ScheduleOut, next_tick

router = APIRouter(prefix="/v1", tags=["schedules"], route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
ScheduleId = Annotated[uuid.UUID, Path(description="The schedule's id")]


def _out(row: dict[str, Any]) -> ScheduleOut:
    return ScheduleOut.model_validate(row)


async def _found(deps: Deps, tenant: str, schedule_id: uuid.UUID) -> dict[str, Any]:
    row = await store.get(deps.pool, tenant, schedule_id)
    if row is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return row


@router.post(
    "/schedules",
    status_code=201,
    response_model=ScheduleOut,
    summary="Create a schedule",
    responses=problems(401, 409, 413, 422),
)
async def create_schedule(body: ScheduleIn, tenant: Tenant, deps: DepsParam) -> ScheduleOut:
    """Submit `run` (as `POST /v1/runs` takes it) or `pipeline` (as `POST /v1/pipelines`
    does) at each tick of `cron` in `timezone`, from the next one on. A tick whose submission
    is refused (say, a plugin withdrawn since) submits nothing and says why in `last_error`."""
    submission = body.model_dump(mode="json", include={"run", "pipeline"}, exclude_none=True)
    row = await store.insert(
        deps.pool,
        tenant=tenant,
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        overlap=body.overlap,
        submission=submission,
        next_at=next_tick(body.cron, body.timezone, datetime.now(UTC)),
    )
    if row is None:
        raise Conflict(f"a schedule named {body.name!r} exists already; delete it or rename")
    return _out(row)


@router.get(
    "/schedules",
    response_model=list[ScheduleOut],
    summary="List schedules",
    responses=problems(401),
)
async def list_schedules(tenant: Tenant, deps: DepsParam) -> list[ScheduleOut]:
    """The tenant's schedules, by name."""
    return [_out(row) for row in await store.list_all(deps.pool, tenant)]


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Get a schedule",
    responses=problems(401, 404, 422),
)
async def get_schedule(schedule_id: ScheduleId, tenant: Tenant, deps: DepsParam) -> ScheduleOut:
    """One schedule: its next tick, its last run, how often it fired and skipped."""
    return _out(await _found(deps, tenant, schedule_id))


@router.post(
    "/schedules/{schedule_id}/pause",
    response_model=ScheduleOut,
    summary="Pause a schedule",
    responses=problems(401, 404, 422),
)
async def pause_schedule(schedule_id: ScheduleId, tenant: Tenant, deps: DepsParam) -> ScheduleOut:
    """No tick fires until it is resumed (runs it made are not touched)."""
    row = await store.set_paused(deps.pool, tenant, schedule_id, True, None)
    if row is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return _out(row)


@router.post(
    "/schedules/{schedule_id}/resume",
    response_model=ScheduleOut,
    summary="Resume a schedule",
    responses=problems(401, 404, 422),
)
async def resume_schedule(schedule_id: ScheduleId, tenant: Tenant, deps: DepsParam) -> ScheduleOut:
    """Fire again from the next tick after now (the ticks missed while paused do not)."""
    found = await _found(deps, tenant, schedule_id)
    later = next_tick(found["cron"], found["timezone"], datetime.now(UTC))
    row = await store.set_paused(deps.pool, tenant, schedule_id, False, later)
    if row is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return _out(row)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a schedule",
    responses=problems(401, 404, 422),
)
async def delete_schedule(schedule_id: ScheduleId, tenant: Tenant, deps: DepsParam) -> Response:
    """No tick fires any more (runs it made are not touched)."""
    if not await store.delete(deps.pool, tenant, schedule_id):
        raise NotFound(f"schedule {schedule_id} not found")
    return Response(status_code=204)
