"""`/v1/tasks`: a tenant's annotation tasks, their annotations (DM) and assignments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from runmesh.catalog import CatalogNotFoundError, UnknownClassError, annotation
from runmesh.catalog.models import AssignmentCreate, AssignmentStatus, TaskStatus
from runmesh.core.events import JsonObject
from runmesh.dm import DMData
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import NotFound
from runmesh.gateway.routes.annotation._shared import (
    NEXT_AFTER,
    TAG_PROJECTS,
    TAG_TASKS,
    AfterId,
    DepsParam,
    ItemLimit,
    ProjectId,
    unknown_classes,
)
from runmesh.gateway.routes.pagination import after_id_page
from runmesh.gateway.routes.support import Int64, MeasuredRoute, problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

TaskId = Annotated[Int64, Path(ge=1, description="The task's id")]


# -- models ----------------------------------------------------------------------------------


class TaskOut(BaseModel):
    """A task: one data unit of a project, its status and its annotations (DM)."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: int
    project_id: uuid.UUID
    data_unit_id: int
    status: TaskStatus
    data: JsonObject | None = Field(description="DM document; null until annotated")
    annotated_by_run_id: uuid.UUID | None = Field(
        description="The run that wrote `data` (a to_task run's pre-annotations, whose "
        "annotations carry the model's `score`); null when it came through the API"
    )
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    """Tasks in id order."""

    items: list[TaskOut]
    next_after: int | None = Field(description=NEXT_AFTER)


class AssignmentOut(BaseModel):
    """An annotator's work on a task (DM)."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: int
    task_id: int
    status: AssignmentStatus
    data: JsonObject = Field(description="DM document")
    created_at: datetime


class AssignmentPage(BaseModel):
    """A task's assignments in id order."""

    items: list[AssignmentOut]
    next_after: int | None = Field(description=NEXT_AFTER)


# -- routes ----------------------------------------------------------------------------------


_AnnotatedBy = Annotated[
    uuid.UUID | None, Query(description="Only tasks whose annotations this run wrote (to_task)")
]
_StatusFilter = Annotated[TaskStatus | None, Query(description="Only tasks in this status")]


@router.get(
    "/tasks",
    response_model=TaskPage,
    summary="List tasks",
    tags=[TAG_TASKS],
    responses=problems(401, 422),
)
async def list_tasks(
    tenant: Tenant,
    deps: DepsParam,
    project_id: Annotated[uuid.UUID | None, Query(description="Only this project's")] = None,
    status: _StatusFilter = None,
    annotated_by_run_id: _AnnotatedBy = None,
    after_id: AfterId = 0,
    limit: ItemLimit = 100,
) -> TaskPage:
    """The tenant's tasks in id order, with their annotations; pass `next_after` as
    `after_id` until it is null."""
    return await _task_page(deps, tenant, project_id, status, annotated_by_run_id, after_id, limit)


@router.get(
    "/projects/{project_id}/tasks",
    response_model=TaskPage,
    summary="List a project's tasks",
    tags=[TAG_PROJECTS],
    responses=problems(401, 404, 422),
)
async def list_project_tasks(
    project_id: ProjectId,
    tenant: Tenant,
    deps: DepsParam,
    status: _StatusFilter = None,
    annotated_by_run_id: _AnnotatedBy = None,
    after_id: AfterId = 0,
    limit: ItemLimit = 100,
) -> TaskPage:
    """The project's tasks in id order with their annotations, pre-annotations included
    (each annotation a model made carries its `score`; `annotated_by_run_id` names the run).
    Pass `next_after` as `after_id` until it is null."""
    if await annotation.get_project(deps.pool, tenant, project_id) is None:
        raise NotFound(f"project {project_id} not found")
    return await _task_page(deps, tenant, project_id, status, annotated_by_run_id, after_id, limit)


async def _task_page(
    deps: Deps,
    tenant: str,
    project_id: uuid.UUID | None,
    status: TaskStatus | None,
    annotated_by_run_id: uuid.UUID | None,
    after_id: int,
    limit: int,
) -> TaskPage:
    rows = await annotation.list_tasks(
        deps.pool,
        tenant,
        project_id=project_id,
        status=status,
        annotated_by_run_id=annotated_by_run_id,
        after_id=after_id,
        limit=limit + 1,
    )
    page, next_after = after_id_page(rows, limit)
    return TaskPage(items=[TaskOut.model_validate(row) for row in page], next_after=next_after)


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    summary="Get a task",
    tags=[TAG_TASKS],
    responses=problems(401, 404, 422),
)
async def get_task(task_id: TaskId, tenant: Tenant, deps: DepsParam) -> TaskOut:
    """One task of the tenant, with its annotations."""
    row = await annotation.get_task(deps.pool, tenant, task_id)
    if row is None:
        raise NotFound(f"task {task_id} not found")
    return TaskOut.model_validate(row)


@router.put(
    "/tasks/{task_id}/data",
    response_model=TaskOut,
    summary="Set a task's annotations",
    tags=[TAG_TASKS],
    responses=problems(401, 404, 422),
)
async def set_task_data(
    task_id: TaskId,
    body: Annotated[DMData, Body(description="The task's annotations in DM format")],
    tenant: Tenant,
    deps: DepsParam,
    status: Annotated[
        TaskStatus | None, Query(description="Also set the task's status; unset = keep it")
    ] = None,
) -> TaskOut:
    """Replace the task's annotations with a DM document (`runmesh.dm.DMData`). An
    invalid document is a 422 naming each field; an annotation whose `class_name` is not in
    the project's label schema is a 422 naming the classes (`unknown_classes`)."""
    try:
        row = await annotation.set_task_data(deps.pool, tenant, task_id, body, status=status)
    except UnknownClassError as exc:
        raise unknown_classes(exc) from exc
    if row is None:
        raise NotFound(f"task {task_id} not found")
    return TaskOut.model_validate(row)


@router.post(
    "/tasks/{task_id}/assignments",
    status_code=201,
    response_model=AssignmentOut,
    summary="Add an assignment to a task",
    tags=[TAG_TASKS],
    responses=problems(401, 404, 422),
)
async def create_assignment(
    task_id: TaskId, body: AssignmentCreate, tenant: Tenant, deps: DepsParam
) -> AssignmentOut:
    """An annotator's work on the task: `{status, data}` with status `submitted` (default),
    `approved` or `rejected` and data a DM document, checked like the task's data."""
    try:
        row = await annotation.create_assignment(
            deps.pool, tenant, task_id, body.data, status=body.status
        )
    except CatalogNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    except UnknownClassError as exc:
        raise unknown_classes(exc) from exc
    return AssignmentOut.model_validate(row)


@router.get(
    "/tasks/{task_id}/assignments",
    response_model=AssignmentPage,
    summary="List a task's assignments",
    tags=[TAG_TASKS],
    responses=problems(401, 404, 422),
)
async def list_assignments(
    task_id: TaskId,
    tenant: Tenant,
    deps: DepsParam,
    after_id: AfterId = 0,
    limit: ItemLimit = 100,
) -> AssignmentPage:
    """The task's assignments in id order; pass `next_after` as `after_id` until it is
    null."""
    if await annotation.get_task(deps.pool, tenant, task_id) is None:
        raise NotFound(f"task {task_id} not found")
    rows = await annotation.list_assignments(
        deps.pool, tenant, task_id, after_id=after_id, limit=limit + 1
    )
    page, next_after = after_id_page(rows, limit)
    return AssignmentPage(
        items=[AssignmentOut.model_validate(row) for row in page], next_after=next_after
    )
