"""`/v1/runs`: submit, list, get, logs, metrics, cancel and rerun a tenant's runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from runmesh.core.events import JsonObject, LogLevel, RunState
from runmesh.core.pipelines import PipelineSpec
from runmesh.gateway import runs_store
from runmesh.gateway.auth import Tenant
from runmesh.gateway.cancellation import cancel_run
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.params_validation import KnownPlugins
from runmesh.gateway.pipelines import store as pipeline_store
from runmesh.gateway.pipelines.start import SubmitPipeline, start_pipeline
from runmesh.gateway.queue_view import queue_views
from runmesh.gateway.routes.pagination import decode_cursor, encode_cursor
from runmesh.gateway.routes.run_ids import RunId
from runmesh.gateway.routes.support import (
    Int32,
    Int64,
    MeasuredRoute,
    UtcDatetime,
    gateway_metrics,
    problems,
)
from runmesh.gateway.run_submission import SubmitRun, submit
from runmesh.gateway.run_view import SECRET_MASK, RunOut, run_view

router = APIRouter(prefix="/v1", tags=["runs"], route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retry-safe submission: the same key (per tenant) answers the same run",
    ),
]

MAX_PAGE = 200
_MAX_METRIC_EVENTS = 100_000


# -- models ----------------------------------------------------------------------------------


class RunList(BaseModel):
    """One page of runs, newest first."""

    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


class LogEntry(BaseModel):
    """One `run.log` event."""

    id: int = Field(description="Event id: pass the last one as `after` to page on")
    attempt: int
    ts: datetime
    level: str = Field(description="debug, info, warning, error or success")
    message: str
    code: str | None = None
    data: JsonObject = Field(default_factory=dict)


class LogPage(BaseModel):
    """Log lines in event order."""

    items: list[LogEntry]
    next_after: int = Field(description="Pass as `after` to get the lines that follow")
    has_more: bool = Field(description="More lines are stored after this page")


class MetricPoint(BaseModel):
    """One reported value of a metric."""

    step: int | None
    value: float
    ts: datetime
    attempt: int


class RunMetrics(BaseModel):
    """Every reported metric value of a run, as series per category and name."""

    run_id: uuid.UUID
    series: dict[str, dict[str, list[MetricPoint]]] = Field(
        description="{category: {name: [{step, value, ts, attempt}]}} in report order"
    )
    latest: dict[str, dict[str, float]] = Field(description="Latest value per category and name")
    truncated: bool = Field(description="True when the run reported more points than returned")


class CancelRequest(BaseModel):
    """Why the run is cancelled (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled by user", max_length=1000)


# -- helpers ---------------------------------------------------------------------------------


async def fetch_run(db: runs_store.Db, tenant: str, run_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's run, or `NotFound` (another tenant's run is not found either)."""
    row = await runs_store.get_run(db, tenant, run_id)
    if row is None:
        raise NotFound(f"run {run_id} not found")
    return row


async def submitted(
    deps: Deps,
    tenant: str,
    body: SubmitRun,
    idempotency_key: str | None,
    request: Request,
    response: Response,
) -> RunOut:
    """Submit `body` and answer with its run: 202 for a new one (counted), 200 for the run
    an Idempotency-Key or run_id made before."""
    row, created = await submit(deps, tenant, body, idempotency_key, request.headers)
    if created:
        gateway_metrics(request.app).count_submitted(body.category)
    else:
        response.status_code = 200
    return (await views(deps, tenant, [row]))[0]


async def views(deps: Deps, tenant: str, rows: Sequence[Mapping[str, Any]]) -> list[RunOut]:
    """Run JSON for stored rows, with percent and masking from their action's manifest, and
    a queued run's place in its queue."""
    if not rows:
        return []
    known = await KnownPlugins.load(deps.pool, tenant, {row["category"] for row in rows})
    queues = await queue_views(deps.pool, deps.topics.prefix, rows)
    now = datetime.now(UTC)
    result = []
    for row in rows:
        found = known.find_action(
            row.get("plugin"), row["category"], row["action"], row.get("plugin_version")
        )
        view = run_view(
            row,
            action=found[1] if found else None,
            plugin_code=found[0].code if found else None,
            now=now,
        )
        view.queue = queues.get(row["id"])
        result.append(view)
    return result


async def _categories_defaulting_to(pool: asyncpg.Pool, tenant: str, code: str) -> list[str]:
    """The categories whose runs without a plugin run `code`."""
    known = await KnownPlugins.load(pool, tenant)
    categories = []
    for category in known.categories():
        try:
            if known.resolve(None, category).code == code:
                categories.append(category)
        except InvalidRequest:  # no single default plugin in that category
            continue
    return categories


def _contains_mask(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_mask(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_mask(item) for item in value)
    return isinstance(value, str) and value == SECRET_MASK


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/runs",
    status_code=202,
    response_model=RunOut,
    summary="Submit a run",
    responses={
        200: {"model": RunOut, "description": "The run this Idempotency-Key/run_id already made"},
        202: {"description": "Accepted: the run is queued and its request will be published"},
        **problems(401, 409, 422, 429),
    },
)
async def submit_run(
    body: SubmitRun,
    request: Request,
    response: Response,
    tenant: Tenant,
    deps: DepsParam,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    """Validate the params against the action's published JSON schema and queue the run.

    202 with the new run. The same `Idempotency-Key` (or `run_id`) again answers 200 with the
    run it made, whatever its state; used for a different request it is a 409. Unknown
    category, plugin or action and invalid params are 422 with the known names or field
    errors; a request over RUNMESH_MAX_MESSAGE_BYTES is 422 (put large data in S3).
    """
    return await submitted(deps, tenant, body, idempotency_key, request, response)


@router.get("/runs", response_model=RunList, summary="List runs", responses=problems(401, 422))
async def list_runs(
    tenant: Tenant,
    deps: DepsParam,
    state: Annotated[list[RunState] | None, Query(description="Any of these states")] = None,
    category: str | None = None,
    plugin: Annotated[str | None, Query(description="Plugin code (any version)")] = None,
    action: str | None = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Runs whose name (`name` param, or a pipeline's name) contains this, "
            "any case",
        ),
    ] = None,
    parent_run_id: uuid.UUID | None = None,
    created_after: UtcDatetime | None = None,
    created_before: UtcDatetime | None = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> RunList:
    """The tenant's runs, newest first, filtered; page with `next_cursor` until it is null.

    The cursor is a position (created_at, id), so runs submitted while paging neither
    repeat nor shift later pages.
    """
    plugin_code = plugin.partition("@")[0] if plugin is not None else None
    where = runs_store.RunFilter(
        states=list(state or ()),
        category=category,
        plugin_code=plugin_code,
        # A run submitted without a plugin ran its category's built-in one, and is shown so.
        builtin_categories=(
            await _categories_defaulting_to(deps.pool, tenant, plugin_code)
            if plugin_code is not None
            else ()
        ),
        action=action,
        name=name,
        parent_run_id=parent_run_id,
        created_after=created_after,
        created_before=created_before,
    )
    rows = await runs_store.list_runs(
        deps.pool,
        tenant,
        where,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    )
    return RunList(items=await views(deps, tenant, page), next_cursor=next_cursor)


@router.get(
    "/runs/{run_id}", response_model=RunOut, summary="Get a run", responses=problems(401, 404, 422)
)
async def get_run(run_id: RunId, tenant: Tenant, deps: DepsParam) -> RunOut:
    """The run with its state, overall and per-category progress, metrics, result or error."""
    row = await fetch_run(deps.pool, tenant, run_id)
    return (await views(deps, tenant, [row]))[0]


@router.get(
    "/runs/{run_id}/logs",
    response_model=LogPage,
    summary="A run's log lines",
    responses=problems(401, 404, 422),
)
async def run_logs(
    run_id: RunId,
    tenant: Tenant,
    deps: DepsParam,
    level: Annotated[
        list[LogLevel] | None, Query(description="Only these levels (repeat for several)")
    ] = None,
    attempt: Annotated[Int32 | None, Query(ge=1, description="Only this attempt")] = None,
    after: Annotated[Int64, Query(ge=0, description="Lines after this event id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LogPage:
    """`run.log` events of every attempt in order, paged by event id (`after`)."""
    await fetch_run(deps.pool, tenant, run_id)
    rows = await runs_store.log_events(
        deps.pool,
        tenant,
        run_id,
        levels=list(level or ()),
        attempt=attempt,
        after=after,
        limit=limit + 1,
    )
    items = [
        LogEntry(
            id=row["id"],
            attempt=row["attempt"],
            ts=row["ts"],
            level=str(row["payload"].get("level", "info")),
            message=str(row["payload"].get("message", "")),
            code=row["payload"].get("code"),
            data=row["payload"].get("data") or {},
        )
        for row in rows[:limit]
    ]
    return LogPage(
        items=items, next_after=items[-1].id if items else after, has_more=len(rows) > limit
    )


@router.get(
    "/runs/{run_id}/metrics",
    response_model=RunMetrics,
    summary="A run's metric series",
    responses=problems(401, 404, 422),
)
async def run_metrics(run_id: RunId, tenant: Tenant, deps: DepsParam) -> RunMetrics:
    """Every `run.metric` value of every attempt, as series per category and name."""
    row = await fetch_run(deps.pool, tenant, run_id)
    rows = await runs_store.metric_events(deps.pool, tenant, run_id, _MAX_METRIC_EVENTS + 1)
    series: dict[str, dict[str, list[MetricPoint]]] = {}
    for event in rows[:_MAX_METRIC_EVENTS]:
        payload = event["payload"]
        values = payload.get("values")
        if not isinstance(values, dict):
            continue
        by_name = series.setdefault(str(payload.get("category", "default")), {})
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                by_name.setdefault(str(name), []).append(
                    MetricPoint(
                        step=payload.get("step"),
                        value=value,
                        ts=event["ts"],
                        attempt=event["attempt"],
                    )
                )
    view = run_view(row)
    return RunMetrics(
        run_id=run_id,
        series=series,
        latest=view.metrics,
        truncated=len(rows) > _MAX_METRIC_EVENTS,
    )


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunOut,
    summary="Cancel a run",
    responses={
        200: {"model": RunOut, "description": "The run was queued and is now cancelled"},
        202: {"description": "The run is running; its worker was asked to stop it"},
        **problems(401, 404, 409, 422),
    },
)
async def cancel(
    run_id: RunId,
    request: Request,
    response: Response,
    tenant: Tenant,
    deps: DepsParam,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> RunOut:
    """Queued: cancelled at once (200). Running: its worker is asked to stop it (202); if no
    worker confirms within RUNMESH_CANCEL_TIMEOUT_S the gateway ends it `cancelled`.
    Already ended: 409."""
    reason = (body or CancelRequest()).reason
    async with (
        deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
        conn.transaction(),
    ):
        outcome = await cancel_run(
            conn, topics=deps.topics, tenant=tenant, run_id=run_id, reason=reason
        )
    deps.relay.wake()
    gateway_metrics(request.app).runs_cancelled.labels(
        "queued" if outcome.ended else "running"
    ).inc()
    response.status_code = 200 if outcome.ended else 202
    return (await views(deps, tenant, [outcome.row]))[0]


async def _rerun_pipeline(
    deps: Deps, tenant: str, run_id: uuid.UUID, idempotency_key: str | None
) -> tuple[dict[str, Any], bool]:
    """A pipeline run again from its first step: its definition and params, all steps anew
    (`resume` is the one that keeps what succeeded)."""
    stored = await pipeline_store.load_pipeline(deps.pool, run_id)
    if stored is None:
        raise NotFound(f"pipeline run {run_id} not found")
    body = SubmitPipeline(pipeline=PipelineSpec.model_validate(stored.spec), params=stored.params)
    return await start_pipeline(deps, tenant, body, idempotency_key, parent_run_id=run_id)


@router.post(
    "/runs/{run_id}/rerun",
    status_code=202,
    response_model=RunOut,
    summary="Run again with the same params",
    responses={
        200: {"model": RunOut, "description": "The run this Idempotency-Key already made"},
        202: {"description": "Accepted: the new run is queued"},
        **problems(401, 404, 409, 422, 429),
    },
)
async def rerun(
    run_id: RunId,
    request: Request,
    response: Response,
    tenant: Tenant,
    deps: DepsParam,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    """A new run of the same category, plugin, action, params (secrets included) and
    timeout, with `parent_run_id` set to this run. Params are validated again, against the
    schema the action publishes now. A pipeline's run starts the same definition with the
    same params again, every step anew."""
    original = await fetch_run(deps.pool, tenant, run_id)
    if original["category"] == runs_store.PIPELINE_CATEGORY:
        row, created = await _rerun_pipeline(deps, tenant, run_id, idempotency_key)
        response.status_code = 202 if created else 200
        return (await views(deps, tenant, [row]))[0]
    if not original["action"]:
        raise Conflict(
            f"run {run_id} was submitted through Kafka and failed before it reported its "
            "action; submit it again"
        )
    params = original["params"] or {}
    if original["submitted_via"] == "kafka" and not params:
        params = original["params_redacted"] or {}
    if _contains_mask(params):
        raise Conflict(
            f"run {run_id} was submitted through Kafka and its secret params never reached the "
            "gateway; submit it again with its secrets"
        )
    body = SubmitRun(
        category=original["category"],
        action=original["action"],
        params=params,
        plugin=original["plugin"],
        timeout_s=original["timeout_s"],
        max_attempts=original["max_attempts"],
        retry_backoff_s=original["retry_backoff_s"],
        placement=original["placement"],
        priority=original["priority"],
        resources=original["resources"],
        parent_run_id=run_id,
    )
    return await submitted(deps, tenant, body, idempotency_key, request, response)
