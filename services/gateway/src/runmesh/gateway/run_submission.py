"""Submitting a run: its params checked against the action's schema, then the run and its
request stored in one transaction (published by the outbox relay)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import asyncpg
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runmesh.core.events import JsonObject, RunRequest, encode
from runmesh.core.pools import DEFAULT_POOL
from runmesh.core.run_policy import (
    DEFAULT_PRIORITY,
    MAX_ATTEMPTS_BOUND,
    RETRY_BACKOFF_BOUND_S,
    Placement,
    Priority,
    Resources,
)
from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import Conflict, InvalidRequest, TooManyRequests
from runmesh.gateway.outbox import REQUEST_EVENT_TYPE, Headers, enqueue, trace_headers
from runmesh.gateway.params_validation import KnownPlugins, validate_params
from runmesh.gateway.run_view import mask_secrets
from runmesh.gateway.tenant_limits import (
    limits_of,
    lock_tenant,
    queue_block,
    usage_of,
)

tracer = trace.get_tracer("runmesh.gateway")
PolicyT = TypeVar("PolicyT", bound=BaseModel)


class SubmitRun(BaseModel):
    """A run to start: which action of which category's plugin, with what params."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"category": "test", "action": "echo", "params": {"name": "a", "count": 3}}
            ]
        },
    )

    category: str = Field(min_length=1, max_length=200, description="Service category")
    action: str = Field(min_length=1, max_length=200)
    params: JsonObject = Field(
        default_factory=dict, description="Validated against the action's params JSON schema"
    )
    plugin: str | None = Field(
        default=None,
        max_length=300,
        description="`code` or `code@version`; unset = the category's built-in plugin",
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Fail the run after this")
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS_BOUND,
        description="Starts of the run before it is failed (a worker crash or loss starts it "
        "again); at most the worker's RUNMESH_MAX_ATTEMPTS. Unset: the action's default, "
        "else RUNMESH_MAX_ATTEMPTS",
    )
    retry_backoff_s: float | None = Field(
        default=None,
        ge=0,
        le=RETRY_BACKOFF_BOUND_S,
        description="Seconds before the second attempt after a retryable failure, doubled for "
        "each later one (with jitter); a worker waits at most its RUNMESH_RETRY_BACKOFF_MAX_S. "
        "Unset: the action's default, else RUNMESH_RETRY_BACKOFF_S",
    )
    placement: Placement | None = Field(
        default=None,
        description="Pools in order of preference and labels its workers must have; unset: "
        "the action's (config.yaml), else the default pool",
    )
    priority: Priority | None = Field(
        default=None,
        description="1 (lowest) to 9 (highest); among the queued runs of its pool a higher "
        "priority starts first, and within one the tenants take turns. Unset: 5",
    )
    resources: Resources | None = Field(
        default=None,
        description='What it needs of its worker: `{"lock_all": true}` runs it alone there; '
        "unset: the action's (config.yaml)",
    )
    parent_run_id: uuid.UUID | None = Field(default=None, description="A run of this tenant")
    run_id: uuid.UUID | None = Field(
        default=None, description="Choose the run's id: submitting it again answers that run"
    )


async def submit(
    deps: Deps,
    tenant: str,
    body: SubmitRun,
    idempotency_key: str | None,
    carrier: Mapping[str, str],
) -> tuple[dict[str, Any], bool]:
    """Validate, then store the run and its request in one transaction; (row, created).

    An Idempotency-Key or run_id seen before answers the existing run (created False); one
    reused for a different request is a conflict, as a silent mismatch would hide a bug.
    """
    known = await KnownPlugins.load(deps.pool, tenant, [body.category])
    plugin, action = known.resolve_action(body.plugin, body.category, body.action)
    schema = action.get("params_schema")
    schema = schema if isinstance(schema, Mapping) else {}
    errors = validate_params(body.params, schema)
    if errors:
        raise InvalidRequest(
            f"params do not validate against {plugin.ref} {body.action}'s schema",
            errors=errors,
        )
    run_id = body.run_id or uuid.uuid4()
    request = RunRequest(
        run_id=run_id,
        category=body.category,
        plugin=body.plugin,
        action=body.action,
        params=body.params,
        tenant=tenant,
        timeout_s=body.timeout_s,
        max_attempts=body.max_attempts,
        retry_backoff_s=body.retry_backoff_s,
        placement=body.placement or action_default(action, "placement", Placement),
        priority=body.priority,
        resources=body.resources or action_default(action, "resources", Resources),
        parent_run_id=body.parent_run_id,
    )
    size = len(encode(request))
    limit = deps.settings.max_message_bytes
    if size > limit:
        raise InvalidRequest(
            f"the run request is {size} bytes, over RUNMESH_MAX_MESSAGE_BYTES={limit}: "
            "put large data in S3 (or another store) and pass its URI in params",
            errors=[{"loc": ["body", "params"], "msg": f"too large ({size} > {limit} bytes)"}],
        )
    # A traced gateway's request span already continues the caller's trace; without one,
    # the caller's `traceparent` header is read here.
    within_request = trace.get_current_span().get_span_context().is_valid
    with tracer.start_as_current_span(
        f"submit {body.category}.{body.action}",
        context=None if within_request else propagate.extract(dict(carrier)),
        kind=SpanKind.PRODUCER,
        attributes={"runmesh.run_id": str(run_id), "runmesh.category": body.category},
    ):
        headers = trace_headers()
    async with (
        deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
        conn.transaction(),
    ):
        if body.parent_run_id is not None and not await runs_store.run_exists(
            conn, tenant, body.parent_run_id
        ):
            raise InvalidRequest(
                f"parent run {body.parent_run_id} not found",
                errors=[{"loc": ["body", "parent_run_id"], "msg": "no such run"}],
            )
        row = await store_request(
            conn,
            deps.topics,
            request,
            params_redacted=mask_secrets(body.params, schema),
            idempotency_key=idempotency_key,
            headers=headers,
            queue_cap=True,
        )
        if row is None:
            return await _existing(conn, tenant, body, run_id, idempotency_key), False
    deps.dispatcher.wake()
    return row, True


async def store_request(
    conn: asyncpg.Connection,
    topics: Topics,
    request: RunRequest,
    *,
    params_redacted: JsonObject,
    idempotency_key: str | None = None,
    headers: Headers | None = None,
    queue_cap: bool = False,
) -> dict[str, Any] | None:
    """Store a queued run and its request in the caller's transaction; None, storing
    nothing, when its id or key is taken. Wake the dispatcher after commit: the request is
    held until it admits the run onto a pool (`dispatcher`). With `queue_cap` (a submission),
    a tenant at its `max_queued` gets `TooManyRequests`."""
    assert request.tenant is not None, "a stored request names its tenant"
    placement = request.placement
    if placement is not None and not (placement.pools or placement.labels):
        placement = None
    limits = (await limits_of(conn, [request.tenant])).get(request.tenant) if queue_cap else None
    # Only a queue cap is checked here (`max_running` is the dispatcher's): no lock without one.
    if limits and any(limit.max_queued is not None for limit in limits):
        await lock_tenant(conn, request.tenant)
        usage = await usage_of(conn, request.tenant)
        if full := queue_block(limits, usage, request.category):
            # The same submission again (a client's retry) answers the run it made, not 429.
            if await runs_store.find_submitted(
                conn, request.tenant, request.run_id, idempotency_key
            ):
                return None
            raise TooManyRequests(full)
    row = await runs_store.insert_run(
        conn,
        runs_store.NewRun(
            id=request.run_id,
            tenant=request.tenant,
            category=request.category,
            plugin=request.plugin,
            action=request.action,
            params=request.params,
            params_redacted=params_redacted,
            timeout_s=request.timeout_s,
            parent_run_id=request.parent_run_id,
            idempotency_key=idempotency_key,
            max_attempts=request.max_attempts,
            retry_backoff_s=request.retry_backoff_s,
            placement=None if placement is None else placement.model_dump(),
            priority=request.priority or DEFAULT_PRIORITY,
            resources=_stored(request.resources),
            deployment=topics.prefix,
        ),
    )
    if row is not None:
        # Stored with the default pool's topic; the dispatcher sets its pool's as it admits.
        await enqueue(
            conn,
            topic=topics.requests(request.category, DEFAULT_POOL),
            key=str(request.run_id),
            message=request,
            event_type=REQUEST_EVENT_TYPE,
            headers=headers,
            held=True,
        )
    return row


def _stored(resources: Resources | None) -> dict[str, Any] | None:
    """What a run asked of its worker, as stored: only what it asked (null: nothing)."""
    asked = None if resources is None else resources.model_dump(exclude_defaults=True)
    return asked or None


def action_default(action: Mapping[str, Any], key: str, model: type[PolicyT]) -> PolicyT | None:
    """What an action's config.yaml asks for under `key` (`placement`, `resources`), if
    anything (a manifest that fails to validate asks for nothing: the worker announced it, so
    it is ours, not the caller's)."""
    found = action.get(key)
    if not isinstance(found, Mapping):
        return None
    try:
        return model.model_validate(found)
    except ValidationError:
        return None


async def _existing(
    conn: asyncpg.Connection,
    tenant: str,
    body: SubmitRun,
    run_id: uuid.UUID,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """The run an insert conflicted with, if it is the same request of the same tenant."""
    row = await runs_store.find_submitted(conn, tenant, run_id, idempotency_key)
    if row is None:
        raise Conflict(f"run id {run_id} is already taken; choose another or leave it unset")
    same = (
        row["category"] == body.category
        and row["action"] == body.action
        and row["plugin"] == body.plugin
        and row["params"] == body.params
    )
    if not same:
        what = f"Idempotency-Key {idempotency_key!r}" if idempotency_key else f"run id {run_id}"
        raise Conflict(
            f"{what} was already used for a different request (run {row['id']}); "
            "use a new key for a new run",
            run_id=str(row["id"]),
        )
    return row
