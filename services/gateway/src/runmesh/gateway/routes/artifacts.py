"""`/v1/runs/{id}/artifacts/{event_id}`: download an artifact a run reported, from the platform
bucket, through the gateway (a browser reaches the gateway, not necessarily S3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from runmesh.common.storage import Storage, StorageError, StorageNotFound, platform_storage
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, NotFound, ServiceUnavailable
from runmesh.gateway.routes.support import Int64, MeasuredRoute, problems

router = APIRouter(prefix="/v1", tags=["runs"], route_class=MeasuredRoute)

_DB_TIMEOUT_S = 10.0


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
    run_id: UUID,
    event_id: Annotated[
        Int64, Path(ge=1, description="The `id` of the run's `run.artifact` event (its SSE id)")
    ],
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
) -> StreamingResponse:
    """Stream an artifact stored in the platform bucket (`s3://<RUNMESH_S3_BUCKET>/…`), such as
    a model's weights or a confusion matrix. Artifacts elsewhere (a `file://` export folder,
    another bucket) are a 409 naming their URI: the gateway serves only what it owns."""
    row = await deps.pool.fetchrow(
        "SELECT payload FROM runs.run_events WHERE id = $1 AND run_id = $2 AND tenant = $3"
        " AND type = 'run.artifact'",
        event_id,
        run_id,
        tenant,
        timeout=_DB_TIMEOUT_S,
    )
    if row is None:
        raise NotFound(f"run {run_id} has no artifact event {event_id}")
    payload: dict[str, Any] = row["payload"] if isinstance(row["payload"], dict) else {}
    name, uri = str(payload.get("name") or "artifact"), str(payload.get("uri") or "")
    bucket = f"s3://{deps.settings.s3_bucket}/"
    if not uri.startswith(bucket) or uri.endswith("/"):
        raise Conflict(
            f"artifact {name!r} is at {uri}: the gateway serves files in the platform bucket "
            f"({bucket}) only"
        )
    if payload.get("media_type") == "inode/directory":
        raise Conflict(f"artifact {name!r} is a folder ({uri}), not a file")
    key = uri[len(bucket) :]
    storage = platform_storage(deps.settings)
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
