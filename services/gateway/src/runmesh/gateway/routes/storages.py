"""`/v1/storages`: where a tenant's files are, within what the operator's storage policy allows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from runmesh.catalog import DuplicateNameError, repository
from runmesh.catalog.models import StorageCreate, public_storage_config
from runmesh.catalog.repository import StorageProvider, StorageRow
from runmesh.core.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.routes.pagination import cursor_page, decode_cursor
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.storage import StorageError, StoragePolicyError, check_storage

router = APIRouter(prefix="/v1", tags=["storages"], route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
StorageId = Annotated[uuid.UUID, Path(description="The storage's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]


class StorageOut(BaseModel):
    """A storage: where files are read from and written to."""

    id: uuid.UUID
    name: str
    provider: StorageProvider
    config: JsonObject = Field(
        description="The provider's config, as validated; a credentials secret is masked"
    )
    created_at: datetime

    # Not model_validate(row) as the other catalog models: `config` is computed, never copied.
    @classmethod
    def of(cls, row: StorageRow) -> StorageOut:
        """From a stored row, its secret masked."""
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            config=public_storage_config(row.config),
            created_at=row.created_at,
        )


class StorageList(BaseModel):
    """One page of storages, newest first."""

    items: list[StorageOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


@router.post(
    "/storages",
    status_code=201,
    response_model=StorageOut,
    summary="Create a storage",
    responses=problems(401, 409, 422),
)
async def create_storage(
    body: Annotated[StorageCreate, Body()], tenant: Tenant, deps: DepsParam
) -> StorageOut:
    """A place files are read from and written to: `file` {root}, `s3` {bucket, prefix,
    endpoint_url, region, credentials} or `http` {base_url, allow_private}. The operator's
    storage policy decides what one may reach: `file` roots only under
    RUNMESH_STORAGE_FILE_ROOTS, S3 endpoints only the platform's or those on
    RUNMESH_STORAGE_S3_ENDPOINTS, the platform bucket only under the tenant's own folders,
    `allow_private` only with RUNMESH_STORAGE_HTTP_ALLOW_PRIVATE; a storage it refuses is a
    422 naming the field and the setting. An s3 storage reads with its own `credentials`
    (stored, shown masked) or, without them, unsigned. A name the tenant already uses is a
    409; an invalid config a 422 naming the field."""
    config = body.config.model_dump(mode="json", context={"reveal_secrets": True})
    try:
        # A file root is resolved on disk (symlinks): off the event loop.
        await asyncio.to_thread(
            check_storage, body.provider, config, deps.settings.storage, tenant=tenant
        )
    except StoragePolicyError as exc:
        raise InvalidRequest(
            f"the operator's storage policy refuses this storage ({exc.setting})",
            errors=[{"loc": ["body", "config", exc.field], "msg": str(exc)}],
        ) from exc
    except StorageError as exc:
        raise InvalidRequest(
            str(exc), errors=[{"loc": ["body", "config"], "msg": str(exc)}]
        ) from exc
    try:
        row = await repository.create_storage(deps.pool, tenant, body)
    except DuplicateNameError as exc:
        raise Conflict(str(exc)) from exc
    return StorageOut.of(row)


@router.get(
    "/storages",
    response_model=StorageList,
    summary="List storages",
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
    page, next_cursor = cursor_page(rows, limit)
    return StorageList(items=[StorageOut.of(row) for row in page], next_cursor=next_cursor)


@router.get(
    "/storages/{storage_id}",
    response_model=StorageOut,
    summary="Get a storage",
    responses=problems(401, 404, 422),
)
async def get_storage(storage_id: StorageId, tenant: Tenant, deps: DepsParam) -> StorageOut:
    """One storage of the tenant."""
    row = await repository.get_storage(deps.pool, tenant, storage_id)
    if row is None:
        raise NotFound(f"storage {storage_id} not found")
    return StorageOut.of(row)
