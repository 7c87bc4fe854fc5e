"""`/v1/projects`, `/v1/tasks`, `/v1/ground-truth-*`: a tenant's annotation catalog."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from runmesh.common.catalog import (
    CatalogNotFoundError,
    DuplicateNameError,
    InvalidReferenceError,
    UnknownClassError,
    annotation,
    ground_truth,
)
from runmesh.common.catalog.annotation import AssignmentRow, ProjectRow, TaskRow
from runmesh.common.catalog.ground_truth import (
    GroundTruthDatasetRow,
    GroundTruthItemRow,
    GroundTruthVersionRow,
)
from runmesh.common.catalog.models import (
    AnnotationType,
    AssignmentCreate,
    AssignmentStatus,
    GroundTruthCategory,
    GroundTruthDatasetCreate,
    GroundTruthVersionCreate,
    LabelSchema,
    ProjectCreate,
    TasksCreate,
    TaskStatus,
)
from runmesh.common.dm import DMData
from runmesh.common.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.routes.pagination import after_id_page, cursor_page, decode_cursor
from runmesh.gateway.routes.support import Int64, MeasuredRoute, problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
ProjectId = Annotated[uuid.UUID, Path(description="The project's id")]
TaskId = Annotated[Int64, Path(ge=1, description="The task's id")]
DatasetId = Annotated[uuid.UUID, Path(description="The ground-truth dataset's id")]
VersionId = Annotated[uuid.UUID, Path(description="The ground-truth version's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]
AfterId = Annotated[Int64, Query(ge=0, description="Items after this id")]
# Tasks, assignments and items carry their DM documents, so their pages stay moderate.
ItemLimit = Annotated[int, Query(ge=1, le=500, description="Items per page")]

_TAG_PROJECTS = "projects"
_TAG_TASKS = "tasks"
_TAG_GROUND_TRUTH = "ground truth"
_NEXT_CURSOR = "Pass as `cursor` for the next page; null = end"
_NEXT_AFTER = "Pass as `after_id` for the next page; null = end"


# -- models ----------------------------------------------------------------------------------


class ProjectOut(BaseModel):
    """A project: a data collection to annotate, the kind of annotation, the classes."""

    id: uuid.UUID
    name: str
    description: str
    data_collection_id: uuid.UUID
    annotation_type: AnnotationType
    label_schema: LabelSchema
    created_at: datetime

    @classmethod
    def of(cls, row: ProjectRow) -> ProjectOut:
        """From a stored row."""
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            data_collection_id=row.data_collection_id,
            annotation_type=row.annotation_type,
            label_schema=row.label_schema,
            created_at=row.created_at,
        )


class ProjectList(BaseModel):
    """One page of projects, newest first."""

    items: list[ProjectOut]
    next_cursor: str | None = Field(description=_NEXT_CURSOR)


class TasksCreated(BaseModel):
    """The tasks of the data units asked for."""

    task_ids: list[int] = Field(description="One per data unit, in the order of the request")
    created: int = Field(description="How many of them are new")


class TaskOut(BaseModel):
    """A task: one data unit of a project, its status and its annotations (DM)."""

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

    @classmethod
    def of(cls, row: TaskRow) -> TaskOut:
        """From a stored row."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            data_unit_id=row.data_unit_id,
            status=row.status,
            data=row.data,
            annotated_by_run_id=row.annotated_by_run_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class TaskPage(BaseModel):
    """Tasks in id order."""

    items: list[TaskOut]
    next_after: int | None = Field(description=_NEXT_AFTER)


class AssignmentOut(BaseModel):
    """An annotator's work on a task (DM)."""

    id: int
    task_id: int
    status: AssignmentStatus
    data: JsonObject = Field(description="DM document")
    created_at: datetime

    @classmethod
    def of(cls, row: AssignmentRow) -> AssignmentOut:
        """From a stored row."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            status=row.status,
            data=row.data,
            created_at=row.created_at,
        )


class AssignmentPage(BaseModel):
    """A task's assignments in id order."""

    items: list[AssignmentOut]
    next_after: int | None = Field(description=_NEXT_AFTER)


class GroundTruthDatasetOut(BaseModel):
    """A ground-truth dataset; its data is in versions."""

    id: uuid.UUID
    name: str
    description: str
    project_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, row: GroundTruthDatasetRow) -> GroundTruthDatasetOut:
        """From a stored row."""
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            project_id=row.project_id,
            created_at=row.created_at,
        )


class GroundTruthDatasetList(BaseModel):
    """One page of ground-truth datasets, newest first."""

    items: list[GroundTruthDatasetOut]
    next_cursor: str | None = Field(description=_NEXT_CURSOR)


class GroundTruthVersionOut(BaseModel):
    """A version of a ground-truth dataset."""

    id: uuid.UUID
    dataset_id: uuid.UUID
    version: str
    item_count: int
    created_at: datetime

    @classmethod
    def of(cls, row: GroundTruthVersionRow) -> GroundTruthVersionOut:
        """From a stored row."""
        return cls(
            id=row.id,
            dataset_id=row.dataset_id,
            version=row.version,
            item_count=row.item_count,
            created_at=row.created_at,
        )


class GroundTruthVersionList(BaseModel):
    """One page of a dataset's versions, newest first."""

    items: list[GroundTruthVersionOut]
    next_cursor: str | None = Field(description=_NEXT_CURSOR)


class GroundTruthItemOut(BaseModel):
    """One item of a ground-truth version."""

    id: int
    version_id: uuid.UUID
    data_unit_id: int | None
    category: GroundTruthCategory | None
    data: JsonObject = Field(description="DM document")
    created_at: datetime

    @classmethod
    def of(cls, row: GroundTruthItemRow) -> GroundTruthItemOut:
        """From a stored row."""
        return cls(
            id=row.id,
            version_id=row.version_id,
            data_unit_id=row.data_unit_id,
            category=row.category,
            data=row.data,
            created_at=row.created_at,
        )


class GroundTruthItemPage(BaseModel):
    """A version's items in id order."""

    items: list[GroundTruthItemOut]
    next_after: int | None = Field(description=_NEXT_AFTER)


# -- errors ----------------------------------------------------------------------------------


def _invalid_reference(exc: InvalidReferenceError) -> InvalidRequest:
    return InvalidRequest(str(exc), errors=[{"loc": ["body", exc.field], "msg": str(exc)}])


def _unknown_classes(exc: UnknownClassError) -> InvalidRequest:
    """A 422 whose `errors` point at each annotation with an unknown class."""
    return InvalidRequest(
        str(exc),
        errors=[
            {"loc": ["body", *path], "msg": f"{name!r} is not a class of the label schema"}
            for path, name in exc.problems
        ],
        unknown_classes=list(dict.fromkeys(name for _, name in exc.problems)),
    )


# -- projects --------------------------------------------------------------------------------


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectOut,
    summary="Create a project",
    tags=[_TAG_PROJECTS],
    responses=problems(401, 409, 422),
)
async def create_project(body: ProjectCreate, tenant: Tenant, deps: DepsParam) -> ProjectOut:
    """A project over one of the tenant's data collections, with an annotation type and a
    label schema `{"classes": [{"id", "name"}, ...]}` (ids and names unique). A name the
    tenant already uses is a 409; a data collection it does not have is a 422."""
    try:
        row = await annotation.create_project(deps.pool, tenant, body)
    except InvalidReferenceError as exc:
        raise _invalid_reference(exc) from exc
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return ProjectOut.of(row)


@router.get(
    "/projects",
    response_model=ProjectList,
    summary="List projects",
    tags=[_TAG_PROJECTS],
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
    return ProjectList(items=[ProjectOut.of(row) for row in page], next_cursor=next_cursor)


@router.get(
    "/projects/{project_id}",
    response_model=ProjectOut,
    summary="Get a project",
    tags=[_TAG_PROJECTS],
    responses=problems(401, 404, 422),
)
async def get_project(project_id: ProjectId, tenant: Tenant, deps: DepsParam) -> ProjectOut:
    """One project of the tenant, with its label schema."""
    row = await annotation.get_project(deps.pool, tenant, project_id)
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return ProjectOut.of(row)


@router.post(
    "/projects/{project_id}/tasks",
    status_code=201,
    response_model=TasksCreated,
    summary="Create tasks from data units",
    tags=[_TAG_PROJECTS],
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
        raise _invalid_reference(exc) from exc
    if not created.created:
        response.status_code = 200
    return TasksCreated(task_ids=list(created.task_ids), created=created.created)


# -- tasks -----------------------------------------------------------------------------------


_AnnotatedBy = Annotated[
    uuid.UUID | None, Query(description="Only tasks whose annotations this run wrote (to_task)")
]
_StatusFilter = Annotated[TaskStatus | None, Query(description="Only tasks in this status")]


@router.get(
    "/tasks",
    response_model=TaskPage,
    summary="List tasks",
    tags=[_TAG_TASKS],
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
    tags=[_TAG_PROJECTS],
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
    return TaskPage(items=[TaskOut.of(row) for row in page], next_after=next_after)


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    summary="Get a task",
    tags=[_TAG_TASKS],
    responses=problems(401, 404, 422),
)
async def get_task(task_id: TaskId, tenant: Tenant, deps: DepsParam) -> TaskOut:
    """One task of the tenant, with its annotations."""
    row = await annotation.get_task(deps.pool, tenant, task_id)
    if row is None:
        raise NotFound(f"task {task_id} not found")
    return TaskOut.of(row)


@router.put(
    "/tasks/{task_id}/data",
    response_model=TaskOut,
    summary="Set a task's annotations",
    tags=[_TAG_TASKS],
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
    """Replace the task's annotations with a DM document (`runmesh.common.dm.DMData`). An
    invalid document is a 422 naming each field; an annotation whose `class_name` is not in
    the project's label schema is a 422 naming the classes (`unknown_classes`)."""
    try:
        row = await annotation.set_task_data(deps.pool, tenant, task_id, body, status=status)
    except UnknownClassError as exc:
        raise _unknown_classes(exc) from exc
    if row is None:
        raise NotFound(f"task {task_id} not found")
    return TaskOut.of(row)


@router.post(
    "/tasks/{task_id}/assignments",
    status_code=201,
    response_model=AssignmentOut,
    summary="Add an assignment to a task",
    tags=[_TAG_TASKS],
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
        raise _unknown_classes(exc) from exc
    return AssignmentOut.of(row)


@router.get(
    "/tasks/{task_id}/assignments",
    response_model=AssignmentPage,
    summary="List a task's assignments",
    tags=[_TAG_TASKS],
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
    return AssignmentPage(items=[AssignmentOut.of(row) for row in page], next_after=next_after)


# -- ground truth ----------------------------------------------------------------------------


@router.post(
    "/ground-truth-datasets",
    status_code=201,
    response_model=GroundTruthDatasetOut,
    summary="Create a ground-truth dataset",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 409, 422),
)
async def create_ground_truth_dataset(
    body: GroundTruthDatasetCreate, tenant: Tenant, deps: DepsParam
) -> GroundTruthDatasetOut:
    """A ground-truth dataset, optionally of a project (whose label schema then checks the
    items of its versions). A name the tenant already uses is a 409; a project it does not
    have is a 422."""
    try:
        row = await ground_truth.create_ground_truth_dataset(deps.pool, tenant, body)
    except InvalidReferenceError as exc:
        raise _invalid_reference(exc) from exc
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return GroundTruthDatasetOut.of(row)


@router.get(
    "/ground-truth-datasets",
    response_model=GroundTruthDatasetList,
    summary="List ground-truth datasets",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 422),
)
async def list_ground_truth_datasets(
    tenant: Tenant, deps: DepsParam, cursor: Cursor = None, limit: Limit = 50
) -> GroundTruthDatasetList:
    """The tenant's ground-truth datasets, newest first; page with `next_cursor` until it is
    null."""
    rows = await ground_truth.list_ground_truth_datasets(
        deps.pool,
        tenant,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page, next_cursor = cursor_page(rows, limit)
    return GroundTruthDatasetList(
        items=[GroundTruthDatasetOut.of(row) for row in page], next_cursor=next_cursor
    )


@router.get(
    "/ground-truth-datasets/{dataset_id}",
    response_model=GroundTruthDatasetOut,
    summary="Get a ground-truth dataset",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def get_ground_truth_dataset(
    dataset_id: DatasetId, tenant: Tenant, deps: DepsParam
) -> GroundTruthDatasetOut:
    """One ground-truth dataset of the tenant."""
    row = await ground_truth.get_ground_truth_dataset(deps.pool, tenant, dataset_id)
    if row is None:
        raise NotFound(f"ground-truth dataset {dataset_id} not found")
    return GroundTruthDatasetOut.of(row)


@router.post(
    "/ground-truth-datasets/{dataset_id}/versions",
    status_code=201,
    response_model=GroundTruthVersionOut,
    summary="Create a ground-truth version with its items",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 404, 409, 422),
)
async def create_ground_truth_version(
    dataset_id: DatasetId, body: GroundTruthVersionCreate, tenant: Tenant, deps: DepsParam
) -> GroundTruthVersionOut:
    """A version (`{version, items}`) with up to 10,000 items `{data_unit_id?, category?,
    data}`, stored all at once: a version does not change afterwards. A version name the
    dataset has is a 409; a data unit the tenant does not have, or (for a dataset of a
    project) a class outside its label schema, is a 422 and nothing is stored."""
    try:
        row = await ground_truth.create_ground_truth_version(
            deps.pool, tenant, dataset_id, body.version, body.items
        )
    except CatalogNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    except InvalidReferenceError as exc:
        raise _invalid_reference(exc) from exc
    except UnknownClassError as exc:
        raise _unknown_classes(exc) from exc
    return GroundTruthVersionOut.of(row)


@router.get(
    "/ground-truth-datasets/{dataset_id}/versions",
    response_model=GroundTruthVersionList,
    summary="List a ground-truth dataset's versions",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def list_ground_truth_versions(
    dataset_id: DatasetId,
    tenant: Tenant,
    deps: DepsParam,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> GroundTruthVersionList:
    """The dataset's versions, newest first; page with `next_cursor` until it is null."""
    if await ground_truth.get_ground_truth_dataset(deps.pool, tenant, dataset_id) is None:
        raise NotFound(f"ground-truth dataset {dataset_id} not found")
    rows = await ground_truth.list_ground_truth_versions(
        deps.pool,
        tenant,
        dataset_id,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page, next_cursor = cursor_page(rows, limit)
    return GroundTruthVersionList(
        items=[GroundTruthVersionOut.of(row) for row in page], next_cursor=next_cursor
    )


@router.get(
    "/ground-truth-versions/{version_id}",
    response_model=GroundTruthVersionOut,
    summary="Get a ground-truth version",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def get_ground_truth_version(
    version_id: VersionId, tenant: Tenant, deps: DepsParam
) -> GroundTruthVersionOut:
    """One ground-truth version of the tenant, with its item count."""
    row = await ground_truth.get_ground_truth_version(deps.pool, tenant, version_id)
    if row is None:
        raise NotFound(f"ground-truth version {version_id} not found")
    return GroundTruthVersionOut.of(row)


@router.get(
    "/ground-truth-versions/{version_id}/items",
    response_model=GroundTruthItemPage,
    summary="List a ground-truth version's items",
    tags=[_TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def list_ground_truth_items(
    version_id: VersionId,
    tenant: Tenant,
    deps: DepsParam,
    category: Annotated[
        GroundTruthCategory | None, Query(description="Only items of this split")
    ] = None,
    after_id: AfterId = 0,
    limit: ItemLimit = 100,
) -> GroundTruthItemPage:
    """The version's items in id order; pass `next_after` as `after_id` until it is null."""
    rows = await ground_truth.list_ground_truth_items(
        deps.pool, tenant, version_id, category=category, after_id=after_id, limit=limit + 1
    )
    # Only an empty page needs to tell a missing version from an empty one (the lookup counts
    # the version's items, too much work for every page).
    if not rows and not await ground_truth.get_ground_truth_version(deps.pool, tenant, version_id):
        raise NotFound(f"ground-truth version {version_id} not found")
    page, next_after = after_id_page(rows, limit)
    return GroundTruthItemPage(
        items=[GroundTruthItemOut.of(row) for row in page], next_after=next_after
    )
