"""`/v1/plugins`: the plugins a tenant can run, as workers announced them, with params schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from runmesh.core.events import JsonObject
from runmesh.gateway import plugin_publishing
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import InvalidRequest, NotFound, PayloadTooLarge
from runmesh.gateway.params_validation import KnownPlugins, PluginVersion
from runmesh.gateway.routes.pagination import decode_key_cursor, encode_key_cursor
from runmesh.gateway.routes.support import MeasuredRoute, problems

router = APIRouter(prefix="/v1", tags=["plugins"], route_class=MeasuredRoute)


class PluginSummary(BaseModel):
    """A plugin at its latest version."""

    code: str
    name: str
    category: str
    description: str = ""
    builtin: bool
    latest_version: str
    versions: list[str] = Field(description="Every announced version, oldest first")
    actions: list[str] = Field(description="Actions of the latest version")
    announced_at: datetime | None = None


class ActionOut(BaseModel):
    """One action: how it runs and the JSON schema its params must match."""

    method: str
    description: str = ""
    params_schema: JsonObject
    progress_categories: dict[str, JsonObject] = Field(default_factory=dict)
    metrics_categories: dict[str, JsonObject] = Field(default_factory=dict)
    timeout_s: float | None = Field(
        default=None, description="Default timeout of its runs; a submission's own wins"
    )
    max_attempts: int | None = Field(
        default=None, description="Default starts of its runs; a submission's own wins"
    )
    retry_backoff_s: float | None = Field(
        default=None,
        description="Default first wait before a retry of its runs; a submission's own wins",
    )
    inputs: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Param path → the types it takes from an earlier pipeline step",
    )
    outputs: dict[str, str] = Field(
        default_factory=dict,
        description="`run` or a result key → the type it gives to later pipeline steps",
    )


class ArchiveOut(BaseModel):
    """A published version's archive."""

    uri: str
    sha256: str
    size: int


class PluginVersionOut(BaseModel):
    """One announced version of a plugin."""

    version: str
    builtin: bool
    announced_at: datetime | None = None
    published: bool = Field(
        default=False, description="Published by this tenant (else built in or on workers)"
    )
    archive: ArchiveOut | None = None
    package_manager: str = "uv"
    data_types: list[str] = Field(default_factory=list)
    annotation_types: list[str] = Field(default_factory=list)
    actions: dict[str, ActionOut]


class PluginDetail(BaseModel):
    """A plugin with every version and its actions' params schemas."""

    code: str
    name: str
    category: str
    description: str = ""
    builtin: bool
    latest_version: str
    versions: list[PluginVersionOut] = Field(description="Oldest first")


def _text(manifest: Any, key: str, default: str = "") -> str:
    value = manifest.get(key) if isinstance(manifest, dict) else None
    return value if isinstance(value, str) else default


def _strings(manifest: Any, key: str) -> list[str]:
    value = manifest.get(key) if isinstance(manifest, dict) else None
    return [str(item) for item in value] if isinstance(value, list) else []


def _summary(versions: list[PluginVersion]) -> PluginSummary:
    latest = versions[-1]
    return PluginSummary(
        code=latest.code,
        name=_text(latest.manifest, "name", latest.code),
        category=latest.category,
        description=_text(latest.manifest, "description"),
        builtin=latest.builtin,
        latest_version=latest.version,
        versions=[plugin.version for plugin in versions],
        actions=sorted(latest.actions),
        announced_at=latest.announced_at,
    )


def _version_out(plugin: PluginVersion) -> PluginVersionOut:
    actions = {}
    for name, entry in plugin.actions.items():
        if isinstance(entry, dict):
            actions[name] = ActionOut.model_validate(
                {"method": "task", "params_schema": {}} | entry
            )
    archive = plugin.manifest.get("archive") if isinstance(plugin.manifest, dict) else None
    return PluginVersionOut(
        version=plugin.version,
        builtin=plugin.builtin,
        announced_at=plugin.announced_at,
        published=plugin.tenant != "*",
        archive=ArchiveOut.model_validate(archive) if isinstance(archive, dict) else None,
        package_manager=_text(plugin.manifest, "package_manager", "uv"),
        data_types=_strings(plugin.manifest, "data_types"),
        annotation_types=_strings(plugin.manifest, "annotation_types"),
        actions=actions,
    )


class PluginList(BaseModel):
    """One page of plugins, by category then code."""

    items: list[PluginSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


@router.get(
    "/plugins",
    response_model=PluginList,
    summary="List plugins",
    responses=problems(401, 422),
)
async def list_plugins(
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
    category: Annotated[str | None, Query(description="Only this category's plugins")] = None,
    data_type: Annotated[
        str | None, Query(description="Only plugins whose latest version lists this data type")
    ] = None,
    annotation_type: Annotated[
        str | None,
        Query(description="Only plugins whose latest version lists this annotation type"),
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> PluginList:
    """Every plugin the tenant can run (built-in, worker-local and its own) at its latest
    version, ordered by category and code; page with `next_cursor` until it is null."""
    after = decode_key_cursor(cursor, 2) if cursor is not None else None
    known = await KnownPlugins.load(deps.pool, tenant, [category] if category else [])
    summaries = [
        _summary(versions)
        for code in known.codes()
        if (versions := known.of_code(code))
        and (data_type is None or data_type in _strings(versions[-1].manifest, "data_types"))
        and (
            annotation_type is None
            or annotation_type in _strings(versions[-1].manifest, "annotation_types")
        )
    ]
    ordered = sorted(summaries, key=lambda plugin: (plugin.category, plugin.code))
    if after is not None:
        ordered = [plugin for plugin in ordered if (plugin.category, plugin.code) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return PluginList(
        items=page,
        next_cursor=encode_key_cursor(page[-1].category, page[-1].code) if more else None,
    )


@router.get(
    "/plugins/{code}",
    response_model=PluginDetail,
    summary="Get a plugin with its params schemas",
    responses=problems(401, 404, 422),
)
async def get_plugin(
    code: Annotated[str, Path(description="The plugin's code")],
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
) -> PluginDetail:
    """Every announced version of the plugin, each action with its params JSON schema."""
    versions = (await KnownPlugins.load(deps.pool, tenant)).of_code(code)
    if not versions:
        raise NotFound(f"plugin {code!r} not found")
    summary = _summary(versions)
    return PluginDetail(
        code=summary.code,
        name=summary.name,
        category=summary.category,
        description=summary.description,
        builtin=summary.builtin,
        latest_version=summary.latest_version,
        versions=[_version_out(plugin) for plugin in versions],
    )


@router.get(
    "/plugins/{code}/versions",
    response_model=list[PluginVersionOut],
    summary="List a plugin's versions",
    responses=problems(401, 404, 422),
)
async def list_plugin_versions(
    code: Annotated[str, Path(description="The plugin's code")],
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
) -> list[PluginVersionOut]:
    """Every version the tenant can run, oldest first: built in, on the workers' plugin path,
    or published (with its archive's checksum). Deleted versions are not listed."""
    versions = (await KnownPlugins.load(deps.pool, tenant)).of_code(code)
    if not versions:
        raise NotFound(f"plugin {code!r} not found")
    return [_version_out(plugin) for plugin in versions]


class PublishedOut(BaseModel):
    """A version just published."""

    code: str
    version: str
    category: str
    archive: ArchiveOut
    actions: list[str]
    published_at: datetime


MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small form fields around the archive

_PUBLISH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["archive"],
                    "properties": {
                        "archive": {
                            "type": "string",
                            "format": "binary",
                            "description": "The zip `runmesh plugin publish` builds",
                        },
                        "sha256": {
                            "type": "string",
                            "description": "The archive's sha256; a mismatch is refused",
                        },
                        "force": {
                            "type": "boolean",
                            "default": False,
                            "description": "Replace an already published pre-release",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/plugins",
    status_code=201,
    response_model=PublishedOut,
    summary="Publish a plugin version",
    responses=problems(401, 409, 413, 422, 503),
    openapi_extra=_PUBLISH_BODY,
)
async def publish_plugin(
    request: Request, tenant: Tenant, deps: Annotated[Deps, Depends(get_deps)]
) -> PublishedOut:
    """Publish a plugin archive (multipart field `archive`) for this tenant.

    The archive is checked (config.yaml, the actions' manifest, size, entry count, no absolute
    paths, `..` or symlinks), stored under `plugins/<tenant>/<code>/<version>.zip` in the
    platform bucket and announced on `runmesh.plugins`; runs may then name `code@version`.
    A published release is immutable (409); a pre-release may be replaced with `force`.
    """
    limit = deps.settings.plugin_archive_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"the upload is {int(declared):,} bytes; plugin archives are limited to "
            f"{limit:,} (RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES)"
        )
    try:
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException as exc:
        if exc.status_code != 400:  # the body limit's 413
            raise
        # Starlette's answer to a form it cannot parse: the request's fault, as invalid JSON is.
        raise InvalidRequest(f"the body is not a plugin upload form: {exc.detail}") from exc
    try:
        upload = form.get("archive")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("multipart field 'archive' (the plugin zip) is missing")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"the archive is over {limit:,} bytes (RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES)"
            )
        sha256 = form.get("sha256")
        force = str(form.get("force", "false")).lower() in ("1", "true", "yes", "on")
    finally:
        await form.close()
    published = await plugin_publishing.publish(
        deps, tenant, data, force=force, sha256=sha256 if isinstance(sha256, str) else None
    )
    manifest = published.manifest
    archive = manifest.archive
    if archive is None:  # publish always sets it
        raise RuntimeError("published manifest without archive")
    return PublishedOut(
        code=manifest.code,
        version=manifest.version,
        category=manifest.category,
        archive=ArchiveOut(uri=archive.uri, sha256=archive.sha256, size=archive.size),
        actions=sorted(manifest.actions),
        published_at=published.published_at,
    )


@router.delete(
    "/plugins/{code}/versions/{version}",
    status_code=204,
    summary="Delete a published plugin version",
    responses=problems(401, 404, 409, 422),
)
async def delete_plugin_version(
    code: Annotated[str, Path(description="The plugin's code")],
    version: Annotated[str, Path(description="The version to withdraw")],
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
) -> Response:
    """Withdraw a version this tenant published: no new run may use it (runs already running
    finish). Built-in and worker-installed plugins cannot be deleted here (409)."""
    await plugin_publishing.withdraw(deps, tenant, code, version)
    return Response(status_code=204)
