"""`/v1/plugins`: the plugins a tenant can run, as workers announced them, with params schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from runmesh.common.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import NotFound
from runmesh.gateway.params_validation import KnownPlugins, PluginVersion
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


class PluginVersionOut(BaseModel):
    """One announced version of a plugin."""

    version: str
    builtin: bool
    announced_at: datetime | None = None
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
    return PluginVersionOut(
        version=plugin.version,
        builtin=plugin.builtin,
        announced_at=plugin.announced_at,
        data_types=_strings(plugin.manifest, "data_types"),
        annotation_types=_strings(plugin.manifest, "annotation_types"),
        actions=actions,
    )


@router.get(
    "/plugins",
    response_model=list[PluginSummary],
    summary="List plugins",
    responses=problems(401, 422),
)
async def list_plugins(
    tenant: Tenant,
    deps: Annotated[Deps, Depends(get_deps)],
    category: Annotated[str | None, Query(description="Only this category's plugins")] = None,
) -> list[PluginSummary]:
    """Every plugin the tenant can run (built-in, worker-local and its own) at its latest
    version, ordered by category and code."""
    known = await KnownPlugins.load(deps.pool, tenant, [category] if category else [])
    summaries = [_summary(versions) for code in known.codes() if (versions := known.of_code(code))]
    return sorted(summaries, key=lambda plugin: (plugin.category, plugin.code))


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
