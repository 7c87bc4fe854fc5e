"""`/v1/projects`: a tenant's annotation projects, and the tasks made from their data units."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from runmesh.catalog import (
    CatalogNotFoundError,
    DuplicateNameError,
    InvalidReferenceError,
    annotation,
)
from runmesh.catalog.models import AnnotationType, LabelSchema, ProjectCreate, TasksCreate
from runmesh.gateway.auth import Tenant
from runmesh.gateway.errors import Conflict, NotFound
from runmesh.gateway.routes.annotation._shared import (
    NEXT_CURSOR,
    TAG_PROJECTS,
    Cursor,
    DepsParam,
    Limit,
    ProjectId,
    invalid_reference,
)
from runmesh.gateway.routes.pagination import cursor_page, decode_cursor
from runmesh.gateway.routes.support import MeasuredRoute, problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)


# -- models ----------------------------------------------------------------------------------


class ProjectOut(BaseModel):
    """A project: a data collection to annotate, the kind of annotation, the classes."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: uuid.UUID
    name: str
    description: str
    data_collection_id: uuid.UUID
    annotation_type: AnnotationType
    label_schema: LabelSchema
    created_at: datetime


class ProjectList(BaseModel):
    """One page of projects, newest first."""

    items: list[ProjectOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class TasksCreated(BaseModel):
    """The tasks of the data units asked for."""

    task_ids: list[int] = Field(description="One per data unit, in the order of the request")
    created: int = Field(description="How many of them are new")


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectOut,
    summary="Create a project",
    tags=[TAG_PROJECTS],
    responses=problems(401, 409, 422),
)
async def create_project(body: ProjectCreate, tenant: Tenant, deps: DepsParam) -> ProjectOut:
    """A project over one of the tenant's data collections, with an annotation type and a
    label schema `{"classes": [{"id", "name"}, ...]}` (ids and names unique). A name the
    tenant already uses is a 409; a data collection it does not have is a 422."""
    try:
        row = await annotation.create_project(deps.pool, tenant, body)
    except InvalidReferenceError as exc:
        raise invalid_reference(exc) from exc
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return ProjectOut.model_validate(row)


@router.get(
    "/projects",
    response_model=ProjectList,
    summary="List projects",
    tags=[TAG_PROJECTS],
    responses=problems(401, 422),
)
async def list_projects(
    tenant: Tenant, deps: DepsParam, cursor: Cursor = None, limit: Limit = 50
) -> ProjectList:
    """The tenant's projects, newest first; page with `next_cursor` until it is null."""
    rows = await annotation.list_projects(
        deps.pool,
        tenant,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page, next_cursor = cursor_page(rows, limit)
    return ProjectList(
        items=[ProjectOut.model_validate(row) for row in page], next_cursor=next_cursor
    )


@router.get(
    "/projects/{project_id}",
    response_model=ProjectOut,
    summary="Get a project",
    tags=[TAG_PROJECTS],
    responses=problems(401, 404, 422),
)
async def get_project(project_id: ProjectId, tenant: Tenant, deps: DepsParam) -> ProjectOut:
    """One project of the tenant, with its label schema."""
    row = await annotation.get_project(deps.pool, tenant, project_id)
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return ProjectOut.model_validate(row)


@router.post(
    "/projects/{project_id}/tasks",
    status_code=201,
    response_model=TasksCreated,
    summary="Create tasks from data units",
    tags=[TAG_PROJECTS],
    responses={
        200: {"description": "Every data unit had a task already"},
        **problems(401, 404, 422),
    },
)
async def create_tasks(
    project_id: ProjectId, body: TasksCreate, tenant: Tenant, deps: DepsParam, response: Response
) -> TasksCreated:
    """One task per data unit (up to 10,000 per request) of the project's data collection.
    A unit that has a task keeps it, so repeating a request is safe: 201 when a task is new,
    200 when none is. A unit outside the collection is a 422 naming it, and nothing is
    stored."""
    try:
        created = await annotation.create_tasks(deps.pool, tenant, project_id, body.data_unit_ids)
    except CatalogNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    except InvalidReferenceError as exc:
        raise invalid_reference(exc) from exc
    if not created.created:
        response.status_code = 200
    return TasksCreated(task_ids=list(created.task_ids), created=created.created)
