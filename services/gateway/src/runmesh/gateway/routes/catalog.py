"""`/v1/storages`, `/v1/data-collections`, `/v1/data-units`: a tenant's data catalog."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field

from runmesh.common.catalog import DuplicateNameError, repository
from runmesh.common.catalog.models import DataCollectionCreate, StorageCreate
from runmesh.common.catalog.repository import (
    DataCollectionRow,
    DataUnitRow,
    StorageProvider,
    StorageRow,
)
from runmesh.common.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.routes.pagination import decode_cursor, encode_cursor
from runmesh.gateway.routes.support import MeasuredRoute, problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
StorageId = Annotated[uuid.UUID, Path(description="The storage's id")]
CollectionId = Annotated[uuid.UUID, Path(description="The data collection's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]

_TAG_STORAGES = "storages"
_TAG_COLLECTIONS = "data collections"


# -- models ----------------------------------------------------------------------------------


class StorageOut(BaseModel):
    """A storage: where files are read from."""

    id: uuid.UUID
    name: str
    provider: StorageProvider
    config: JsonObject = Field(description="The provider's config, as validated")
    created_at: datetime

    @classmethod
    def of(cls, row: StorageRow) -> StorageOut:
        """From a stored row."""
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            config=row.config,
            created_at=row.created_at,
        )


class StorageList(BaseModel):
    """One page of storages, newest first."""

    items: list[StorageOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


class FileSpecificationOut(BaseModel):
    """One kind of file of a data unit."""

    name: str
    required: bool
    extensions: list[str] = Field(description="Lowercase, with a leading dot")
    is_primary: bool


class DataCollectionOut(BaseModel):
    """A data collection: which files make one data unit."""

    id: uuid.UUID
    name: str
    description: str
    file_specifications: list[FileSpecificationOut]
    data_unit_meta_schema: JsonObject | None
    created_at: datetime

    @classmethod
    def of(cls, row: DataCollectionRow) -> DataCollectionOut:
        """From a stored row."""
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            file_specifications=[
                FileSpecificationOut(
                    name=spec.name,
                    required=spec.required,
                    extensions=list(spec.extensions),
                    is_primary=spec.is_primary,
                )
                for spec in row.file_specifications
            ],
            data_unit_meta_schema=row.data_unit_meta_schema,
            created_at=row.created_at,
        )


class DataCollectionList(BaseModel):
    """One page of data collections, newest first."""

    items: list[DataCollectionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


class DataFileOut(BaseModel):
    """One file of a data unit."""

    model_config = ConfigDict(extra="allow")

    uri: str
    size: int | None = None
    checksum: str | None = None
    media_type: str | None = None


class DataUnitOut(BaseModel):
    """A data unit: the files of one stem, by file specification name, and its meta."""

    id: int
    data_collection_id: uuid.UUID
    unit_key: str = Field(description="The file stem that grouped the files")
    files: dict[str, DataFileOut]
    meta: JsonObject
    upload_run_id: uuid.UUID | None = Field(description="The upload run that stored it")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: DataUnitRow) -> DataUnitOut:
        """From a stored row."""
        return cls(
            id=row.id,
            data_collection_id=row.data_collection_id,
            unit_key=row.unit_key,
            files={
                name: DataFileOut.model_validate(dict(file)) for name, file in row.files.items()
            },
            meta=row.meta,
            upload_run_id=row.upload_run_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class DataUnitPage(BaseModel):
    """Data units in id order."""

    items: list[DataUnitOut]
    next_after: int | None = Field(
        description="Pass as `after_id` for the next page; null = no more units"
    )


# -- storages --------------------------------------------------------------------------------


@router.post(
    "/storages",
    status_code=201,
    response_model=StorageOut,
    summary="Create a storage",
    tags=[_TAG_STORAGES],
    responses=problems(401, 409, 422),
)
async def create_storage(
    body: Annotated[StorageCreate, Body()], tenant: Tenant, deps: DepsParam
) -> StorageOut:
    """A place files are read from: `file` {root}, `s3` {bucket, prefix, endpoint_url} or
    `http` {base_url, allow_private}. Credentials are not stored; services take them from
    their environment. A name the tenant already uses is a 409; an invalid config a 422
    naming the field."""
    try:
        row = await repository.create_storage(deps.pool, tenant, body)
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return StorageOut.of(row)


@router.get(
    "/storages",
    response_model=StorageList,
    summary="List storages",
    tags=[_TAG_STORAGES],
    responses=problems(401, 422),
)
async def list_storages(
    tenant: Tenant, deps: DepsParam, cursor: Cursor = None, limit: Limit = 50
) -> StorageList:
    """The tenant's storages, newest first; page with `next_cursor` until it is null."""
    rows = await repository.list_storages(
        deps.pool,
        tenant,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    more = len(rows) > limit
    return StorageList(
        items=[StorageOut.of(row) for row in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/storages/{storage_id}",
    response_model=StorageOut,
    summary="Get a storage",
    tags=[_TAG_STORAGES],
    responses=problems(401, 404, 422),
)
async def get_storage(storage_id: StorageId, tenant: Tenant, deps: DepsParam) -> StorageOut:
    """One storage of the tenant."""
    row = await repository.get_storage(deps.pool, tenant, storage_id)
    if row is None:
        raise NotFound(f"storage {storage_id} not found")
    return StorageOut.of(row)


# -- data collections ------------------------------------------------------------------------


@router.post(
    "/data-collections",
    status_code=201,
    response_model=DataCollectionOut,
    summary="Create a data collection",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 409, 422),
)
async def create_collection(
    body: DataCollectionCreate, tenant: Tenant, deps: DepsParam
) -> DataCollectionOut:
    """A collection whose data units group files by stem, one file per specification.
    Extensions are stored lowercase with a leading dot; at most one specification is primary.
    `data_unit_meta_schema` must be a JSON Schema (2020-12). A name the tenant already uses
    is a 409."""
    if body.data_unit_meta_schema is not None:
        try:
            Draft202012Validator.check_schema(body.data_unit_meta_schema)
        except SchemaError as exc:
            raise InvalidRequest(
                "data_unit_meta_schema is not a valid JSON Schema",
                errors=[{"loc": ["body", "data_unit_meta_schema"], "msg": exc.message}],
            ) from exc
    try:
        row = await repository.create_collection(deps.pool, tenant, body)
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return DataCollectionOut.of(row)


@router.get(
    "/data-collections",
    response_model=DataCollectionList,
    summary="List data collections",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 422),
)
async def list_collections(
    tenant: Tenant, deps: DepsParam, cursor: Cursor = None, limit: Limit = 50
) -> DataCollectionList:
    """The tenant's data collections, newest first; page with `next_cursor` until it is
    null."""
    rows = await repository.list_collections(
        deps.pool,
        tenant,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    more = len(rows) > limit
    return DataCollectionList(
        items=[DataCollectionOut.of(row) for row in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/data-collections/{collection_id}",
    response_model=DataCollectionOut,
    summary="Get a data collection",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 404, 422),
)
async def get_collection(
    collection_id: CollectionId, tenant: Tenant, deps: DepsParam
) -> DataCollectionOut:
    """One data collection of the tenant, with its file specifications."""
    row = await repository.get_collection(deps.pool, tenant, collection_id)
    if row is None:
        raise NotFound(f"data collection {collection_id} not found")
    return DataCollectionOut.of(row)


# -- data units ------------------------------------------------------------------------------


@router.get(
    "/data-collections/{collection_id}/data-units",
    response_model=DataUnitPage,
    summary="List a collection's data units",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 404, 422),
)
async def list_data_units(
    collection_id: CollectionId,
    tenant: Tenant,
    deps: DepsParam,
    upload_run_id: Annotated[
        uuid.UUID | None, Query(description="Only the units this upload run stored")
    ] = None,
    after_id: Annotated[int, Query(ge=0, description="Units after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DataUnitPage:
    """The collection's data units in id order; pass `next_after` as `after_id` until it is
    null."""
    if await repository.get_collection(deps.pool, tenant, collection_id) is None:
        raise NotFound(f"data collection {collection_id} not found")
    rows = await repository.list_data_units(
        deps.pool,
        tenant,
        collection_id,
        after_id=after_id,
        limit=limit + 1,
        upload_run_id=upload_run_id,
    )
    page = rows[:limit]
    return DataUnitPage(
        items=[DataUnitOut.of(row) for row in page],
        next_after=page[-1].id if len(rows) > limit else None,
    )


@router.get(
    "/data-units/{unit_id}",
    response_model=DataUnitOut,
    summary="Get a data unit",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 404, 422),
)
async def get_data_unit(
    unit_id: Annotated[int, Path(ge=1, description="The data unit's id")],
    tenant: Tenant,
    deps: DepsParam,
) -> DataUnitOut:
    """One data unit of the tenant: its files by specification name and its meta."""
    row = await repository.get_data_unit(deps.pool, tenant, unit_id)
    if row is None:
        raise NotFound(f"data unit {unit_id} not found")
    return DataUnitOut.of(row)
