"""`/v1/data-collections`, `/v1/data-units`: a tenant's data catalog (storages: `storages`)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Response
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from runmesh.catalog import CatalogNotFoundError, DuplicateNameError, repository
from runmesh.catalog.models import DataCollectionCreate
from runmesh.catalog.repository import (
    DataCollectionRow,
    DataFile,
    NewDataUnit,
)
from runmesh.core.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.routes.pagination import after_id_page, cursor_page, decode_cursor
from runmesh.gateway.routes.support import Int64, MeasuredRoute, problems
from runmesh.gateway.uri_scope import uri_problems

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
CollectionId = Annotated[uuid.UUID, Path(description="The data collection's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]

_TAG_COLLECTIONS = "data collections"

# Units registered by hand come in requests, not runs: a batch the gateway validates against
# the collection in one go and stores in one transaction stays small.
MAX_REGISTER_BATCH = 1_000
# The places a file of a unit can be: the storage providers and the platform bucket.
_URI_SCHEMES = frozenset({"s3", "file", "http", "https"})
# Enough for a person to fix a request; the rest are alike.
_MAX_ERRORS = 100


# -- models ----------------------------------------------------------------------------------


class FileSpecificationOut(BaseModel):
    """One kind of file of a data unit."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    name: str
    required: bool
    extensions: list[str] = Field(description="Lowercase, with a leading dot")
    is_primary: bool


class DataCollectionOut(BaseModel):
    """A data collection: which files make one data unit."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: uuid.UUID
    name: str
    description: str
    file_specifications: list[FileSpecificationOut]
    data_unit_meta_schema: JsonObject | None
    created_at: datetime


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

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: int
    data_collection_id: uuid.UUID
    unit_key: str = Field(description="The file stem that grouped the files")
    files: dict[str, DataFileOut]
    meta: JsonObject
    upload_run_id: uuid.UUID | None = Field(description="The upload run that stored it")
    created_at: datetime
    updated_at: datetime


class DataUnitPage(BaseModel):
    """Data units in id order."""

    items: list[DataUnitOut]
    next_after: int | None = Field(
        description="Pass as `after_id` for the next page; null = no more units"
    )


# Unit keys are file stems: any text but control characters (PostgreSQL stores no NUL).
UnitKey = Annotated[
    str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class DataFileIn(BaseModel):
    """One file of a data unit registered by hand: where it is, its size and, optionally,
    its checksum and media type."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(
        max_length=4096,
        description="s3://, file://, http:// or https:// URI of the file, in a storage of the "
        "tenant or its folder of the platform bucket (`s3://<bucket>/<tenant>/...`)",
    )
    size: int = Field(ge=0, description="Bytes")
    checksum: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[a-z0-9-]+:[^\s\x00-\x1f\x7f]+$",
        description="`algorithm:value`, e.g. `sha256:<hex>`",
    )
    media_type: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[\w!#$&^.+-]+/[\w!#$&^.+-]+(;[^\x00-\x1f\x7f]*)?$",
        description="e.g. `image/jpeg`",
    )

    @field_validator("uri")
    @classmethod
    def _located(cls, uri: str) -> str:
        if any(ord(char) < 0x20 or char == "\x7f" for char in uri):
            raise ValueError("must not contain control characters")
        parts = urlsplit(uri)
        if parts.scheme not in _URI_SCHEMES or not (parts.netloc or parts.path.strip("/")):
            raise ValueError("must be an s3://, file://, http:// or https:// URI of a file")
        return uri


class DataUnitIn(BaseModel):
    """A data unit registered by hand: its key, its files by specification name, its meta."""

    model_config = ConfigDict(extra="forbid")

    unit_key: UnitKey = Field(description="Unique in the collection among units without a run")
    files: dict[str, DataFileIn] = Field(
        min_length=1, max_length=100, description="By file specification name"
    )
    meta: JsonObject = Field(
        default_factory=dict, description="Must match the collection's data_unit_meta_schema"
    )

    @field_validator("meta")
    @classmethod
    def _storable(cls, meta: JsonObject) -> JsonObject:
        if any("\x00" in text for text in _strings(meta)):
            raise ValueError("must not contain NUL characters")
        return meta


class DataUnitsRegister(BaseModel):
    """Data units to register by hand in a collection."""

    model_config = ConfigDict(extra="forbid")

    units: list[DataUnitIn] = Field(min_length=1, max_length=MAX_REGISTER_BATCH)

    @field_validator("units")
    @classmethod
    def _distinct(cls, units: list[DataUnitIn]) -> list[DataUnitIn]:
        counts = Counter(unit.unit_key for unit in units)
        repeated = sorted(key for key, count in counts.items() if count > 1)
        if repeated:
            shown = ", ".join(repr(key) for key in repeated[:5])
            raise ValueError(f"unit keys must be unique in a request: {shown} repeat")
        return units


class DataUnitsRegistered(BaseModel):
    """The data units of a registration."""

    data_unit_ids: list[int] = Field(description="One per unit, in the order of the request")
    created: int = Field(description="How many of them are new")
    updated: int = Field(description="How many existing ones got new files or meta")


def _strings(value: Any) -> Iterator[str]:  # Any: arbitrary JSON
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _unit_problems(collection: DataCollectionRow, units: list[DataUnitIn]) -> list[JsonObject]:
    """Where each unit does not fit the collection, as problem+json `errors` entries: files
    under unknown specifications or with extensions their specification does not allow,
    required specifications missing, meta against `data_unit_meta_schema` (the same rules
    the upload service applies to the units it stores)."""
    specs = {spec.name: spec for spec in collection.file_specifications}
    names = ", ".join(specs)
    schema = collection.data_unit_meta_schema
    meta_validator = Draft202012Validator(schema) if schema else None
    errors: list[JsonObject] = []
    for index, unit in enumerate(units):
        where = ["body", "units", index]
        for name, file in unit.files.items():
            spec = specs.get(name)
            if spec is None:
                errors.append(
                    {
                        "loc": [*where, "files", name],
                        "msg": f"not a file specification of data collection {collection.id}"
                        f" ({names})",
                    }
                )
                continue
            path = urlsplit(file.uri).path.lower()
            # endswith, not the last suffix: specifications may list `.nii.gz`.
            if not any(path.endswith(extension) for extension in spec.extensions):
                shown = PurePosixPath(path).suffix or "(none)"
                allowed = ", ".join(spec.extensions)
                errors.append(
                    {
                        "loc": [*where, "files", name, "uri"],
                        "msg": f"extension {shown} not allowed for {name} ({allowed})",
                    }
                )
        missing = sorted(
            name for name, spec in specs.items() if spec.required and name not in unit.files
        )
        if missing:
            errors.append(
                {
                    "loc": [*where, "files"],
                    "msg": f"missing required file specification(s) {', '.join(missing)}",
                }
            )
        if meta_validator is not None:
            errors.extend(
                {
                    "loc": [*where, "meta", *error.absolute_path],
                    "msg": "does not match the collection's data_unit_meta_schema: "
                    + error.message,
                }
                for error in meta_validator.iter_errors(unit.meta)
            )
    return errors


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
    return DataCollectionOut.model_validate(row)


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
    page, next_cursor = cursor_page(rows, limit)
    return DataCollectionList(
        items=[DataCollectionOut.model_validate(row) for row in page], next_cursor=next_cursor
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
    return DataCollectionOut.model_validate(row)


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
    after_id: Annotated[Int64, Query(ge=0, description="Units after this id")] = 0,
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
    page, next_after = after_id_page(rows, limit)
    return DataUnitPage(
        items=[DataUnitOut.model_validate(row) for row in page], next_after=next_after
    )


@router.post(
    "/data-collections/{collection_id}/data-units",
    status_code=201,
    response_model=DataUnitsRegistered,
    summary="Register data units by hand",
    tags=[_TAG_COLLECTIONS],
    responses={
        200: {"description": "Every unit key had a unit already"},
        **problems(401, 404, 422),
    },
)
async def register_data_units(
    collection_id: CollectionId,
    body: DataUnitsRegister,
    tenant: Tenant,
    deps: DepsParam,
    response: Response,
) -> DataUnitsRegistered:
    """Data units whose files are stored already (up to 1,000 per request), without an
    upload run. A unit key the collection has a unit without a run for updates that unit, so
    repeating a request is safe: 201 when a unit is new, 200 when none is. Files must be
    under the collection's specifications, with their extensions, every required one
    present, each URI in a storage of the tenant (or its folders of the platform bucket), and
    `meta` must match its `data_unit_meta_schema`; otherwise a 422 names each field at fault,
    and nothing is stored."""
    collection = await repository.get_collection(deps.pool, tenant, collection_id)
    if collection is None:
        raise NotFound(f"data collection {collection_id} not found")
    errors = _unit_problems(collection, body.units) + await uri_problems(deps, tenant, body.units)
    if errors:
        raise InvalidRequest(
            f"data units do not fit data collection {collection_id}",
            errors=errors[:_MAX_ERRORS],
        )
    units = [
        NewDataUnit(
            unit_key=unit.unit_key,
            files={name: _data_file(file) for name, file in unit.files.items()},
            meta=unit.meta,
        )
        for unit in body.units
    ]
    try:
        registered = await repository.register_data_units(deps.pool, tenant, collection_id, units)
    except CatalogNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    if not registered.created:
        response.status_code = 200
    return DataUnitsRegistered(
        data_unit_ids=list(registered.ids),
        created=registered.created,
        updated=registered.updated,
    )


def _data_file(file: DataFileIn) -> DataFile:
    return {
        "uri": file.uri,
        "size": file.size,
        "checksum": file.checksum,
        "media_type": file.media_type,
    }


@router.get(
    "/data-units/{unit_id}",
    response_model=DataUnitOut,
    summary="Get a data unit",
    tags=[_TAG_COLLECTIONS],
    responses=problems(401, 404, 422),
)
async def get_data_unit(
    unit_id: Annotated[Int64, Path(ge=1, description="The data unit's id")],
    tenant: Tenant,
    deps: DepsParam,
) -> DataUnitOut:
    """One data unit of the tenant: its files by specification name and its meta."""
    row = await repository.get_data_unit(deps.pool, tenant, unit_id)
    if row is None:
        raise NotFound(f"data unit {unit_id} not found")
    return DataUnitOut.model_validate(row)
