"""`/v1/ground-truth-datasets`, `/v1/ground-truth-versions`: a tenant's ground truth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from runmesh.catalog import (
    CatalogNotFoundError,
    DuplicateNameError,
    InvalidReferenceError,
    UnknownClassError,
    ground_truth,
)
from runmesh.catalog.models import (
    GroundTruthCategory,
    GroundTruthDatasetCreate,
    GroundTruthVersionCreate,
)
from runmesh.core.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.errors import Conflict, NotFound
from runmesh.gateway.routes.annotation._shared import (
    NEXT_AFTER,
    NEXT_CURSOR,
    TAG_GROUND_TRUTH,
    AfterId,
    Cursor,
    DepsParam,
    ItemLimit,
    Limit,
    invalid_reference,
    unknown_classes,
)
from runmesh.gateway.routes.pagination import after_id_page, cursor_page, decode_cursor
from runmesh.gateway.routes.support import MeasuredRoute, problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DatasetId = Annotated[uuid.UUID, Path(description="The ground-truth dataset's id")]
VersionId = Annotated[uuid.UUID, Path(description="The ground-truth version's id")]


# -- models ----------------------------------------------------------------------------------


class GroundTruthDatasetOut(BaseModel):
    """A ground-truth dataset; its data is in versions."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: uuid.UUID
    name: str
    description: str
    project_id: uuid.UUID | None
    created_at: datetime


class GroundTruthDatasetList(BaseModel):
    """One page of ground-truth datasets, newest first."""

    items: list[GroundTruthDatasetOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class GroundTruthVersionOut(BaseModel):
    """A version of a ground-truth dataset."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: uuid.UUID
    dataset_id: uuid.UUID
    version: str
    item_count: int
    created_at: datetime


class GroundTruthVersionList(BaseModel):
    """One page of a dataset's versions, newest first."""

    items: list[GroundTruthVersionOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class GroundTruthItemOut(BaseModel):
    """One item of a ground-truth version."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: int
    version_id: uuid.UUID
    data_unit_id: int | None
    category: GroundTruthCategory | None
    data: JsonObject = Field(description="DM document")
    created_at: datetime


class GroundTruthItemPage(BaseModel):
    """A version's items in id order."""

    items: list[GroundTruthItemOut]
    next_after: int | None = Field(description=NEXT_AFTER)


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/ground-truth-datasets",
    status_code=201,
    response_model=GroundTruthDatasetOut,
    summary="Create a ground-truth dataset",
    tags=[TAG_GROUND_TRUTH],
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
        raise invalid_reference(exc) from exc
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return GroundTruthDatasetOut.model_validate(row)


@router.get(
    "/ground-truth-datasets",
    response_model=GroundTruthDatasetList,
    summary="List ground-truth datasets",
    tags=[TAG_GROUND_TRUTH],
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
        items=[GroundTruthDatasetOut.model_validate(row) for row in page], next_cursor=next_cursor
    )


@router.get(
    "/ground-truth-datasets/{dataset_id}",
    response_model=GroundTruthDatasetOut,
    summary="Get a ground-truth dataset",
    tags=[TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def get_ground_truth_dataset(
    dataset_id: DatasetId, tenant: Tenant, deps: DepsParam
) -> GroundTruthDatasetOut:
    """One ground-truth dataset of the tenant."""
    row = await ground_truth.get_ground_truth_dataset(deps.pool, tenant, dataset_id)
    if row is None:
        raise NotFound(f"ground-truth dataset {dataset_id} not found")
    return GroundTruthDatasetOut.model_validate(row)


@router.post(
    "/ground-truth-datasets/{dataset_id}/versions",
    status_code=201,
    response_model=GroundTruthVersionOut,
    summary="Create a ground-truth version with its items",
    tags=[TAG_GROUND_TRUTH],
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
        raise invalid_reference(exc) from exc
    except UnknownClassError as exc:
        raise unknown_classes(exc) from exc
    return GroundTruthVersionOut.model_validate(row)


@router.get(
    "/ground-truth-datasets/{dataset_id}/versions",
    response_model=GroundTruthVersionList,
    summary="List a ground-truth dataset's versions",
    tags=[TAG_GROUND_TRUTH],
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
        items=[GroundTruthVersionOut.model_validate(row) for row in page], next_cursor=next_cursor
    )


@router.get(
    "/ground-truth-versions/{version_id}",
    response_model=GroundTruthVersionOut,
    summary="Get a ground-truth version",
    tags=[TAG_GROUND_TRUTH],
    responses=problems(401, 404, 422),
)
async def get_ground_truth_version(
    version_id: VersionId, tenant: Tenant, deps: DepsParam
) -> GroundTruthVersionOut:
    """One ground-truth version of the tenant, with its item count."""
    row = await ground_truth.get_ground_truth_version(deps.pool, tenant, version_id)
    if row is None:
        raise NotFound(f"ground-truth version {version_id} not found")
    return GroundTruthVersionOut.model_validate(row)


@router.get(
    "/ground-truth-versions/{version_id}/items",
    response_model=GroundTruthItemPage,
    summary="List a ground-truth version's items",
    tags=[TAG_GROUND_TRUTH],
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
        items=[GroundTruthItemOut.model_validate(row) for row in page], next_after=next_after
    )
