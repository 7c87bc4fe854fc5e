"""`/v1/runs/{id}/artifacts/{event_id}`: download an artifact a run reported, from the run's own
folder of the platform bucket, through the gateway (a browser reaches the gateway, not
necessarily S3).

A run reports an artifact's URI itself, so the URI proves nothing: only what lies under the
run's own folders (`runs/<tenant>/<run>/`, `models/<tenant>/<run>/`, or its parent run's, where
a child run such as a tune trial writes) is served; anything else is a 409.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from runmesh.gateway import runs_store
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, NotFound, ServiceUnavailable
from runmesh.gateway.routes.run_ids import RunId
from runmesh.gateway.routes.support import Int64, MeasuredRoute, problems
from runmesh.storage import (
    Storage,
    StorageError,
    StorageNotFound,
    own_key,
    platform_storage,
    run_prefixes,
)

router = APIRouter(prefix="/v1", tags=["runs"], route_class=MeasuredRoute)


@router.get(
    "/runs/{run_id}/artifacts/{event_id}",
    summary="Download a run's artifact",
    response_class=StreamingResponse,
    responses={
        **problems(401, 404, 409, 422, 503),
        200: {"description": "The artifact's bytes", "content": {"application/octet-stream": {}}},
    },
)
async def download_artifact(
    run_id: RunId,
    event_id: Annotated[
        Int64, Path(ge=1, description="The `id` of the run's `run.artifact` event (its SSE id)")
    ],
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
) -> StreamingResponse:
    """Stream an artifact stored in the run's own folder of the platform bucket
    (`s3://<RUNMESH_S3_BUCKET>/runs/<tenant>/<run>/…` or `…/models/<tenant>/<run>/…`, the
    parent run's for a child run), such as a model's weights or a confusion matrix.
    Artifacts elsewhere (a `file://` export folder, another bucket, another run's or
    tenant's folder) are a 409 naming their URI: the gateway serves only what the run wrote
    where the platform put it."""
    row = await runs_store.artifact_event(deps.pool, tenant, run_id, event_id)
    if row is None:
        raise NotFound(f"run {run_id} has no artifact event {event_id}")
    payload: dict[str, Any] = row["payload"] if isinstance(row["payload"], dict) else {}
    name, uri = str(payload.get("name") or "artifact"), str(payload.get("uri") or "")
    if payload.get("media_type") == "inode/directory" or uri.endswith("/"):
        raise Conflict(f"artifact {name!r} is a folder ({uri}), not a file")
    owners = [run_id] if row["parent_run_id"] is None else [run_id, row["parent_run_id"]]
    key = own_key(uri, deps.settings.s3_bucket, run_prefixes(tenant, owners))
    if key is None:
        shown = ", ".join(
            f"s3://{deps.settings.s3_bucket}/{prefix}" for prefix in run_prefixes(tenant, [run_id])
        )
        raise Conflict(
            f"artifact {name!r} is at {uri}: the gateway serves only files in the run's own "
            f"folders of the platform bucket ({shown})"
        )
    storage = platform_storage(deps.settings.s3)
    try:
        info = await storage.stat(key)
    except StorageNotFound as exc:
        await storage.close()
        raise NotFound(f"artifact {name!r} is no longer at {uri}") from exc
    except StorageError as exc:
        await storage.close()
        raise ServiceUnavailable(f"cannot read artifact {name!r}: {exc}") from exc
    file_name = key.rsplit("/", 1)[-1]
    return StreamingResponse(
        _stream(storage, key),
        media_type=str(payload.get("media_type") or "application/octet-stream"),
        headers={
            "Content-Length": str(info.size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file_name)}",
        },
    )


async def _stream(storage: Storage, key: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in storage.read(key):
            yield chunk
    finally:
        await storage.close()
