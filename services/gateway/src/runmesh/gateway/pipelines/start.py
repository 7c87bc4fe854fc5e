"""Starting a pipeline: its definition checked against the plugins the tenant can run, then
its run, its steps and the requests of its first steps stored in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runmesh.core.events import JsonObject
from runmesh.core.pipeline_types import ActionTypes, check_types
from runmesh.core.pipelines import (
    PipelineReferenceError,
    PipelineSpec,
    missing_params,
    step_params,
)
from runmesh.gateway import runs_store
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import Conflict, GatewayError, InvalidRequest
from runmesh.gateway.params_validation import KnownPlugins, validate_params
from runmesh.gateway.pipelines import store
from runmesh.gateway.pipelines.forward import step_forward, step_run_id, workspace_uri


class SubmitPipeline(BaseModel):
    """A pipeline to run: its definition and the values of its params."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineSpec
    params: JsonObject = Field(
        default_factory=dict, description="Values of the pipeline's params (over its defaults)"
    )
    run_id: uuid.UUID | None = Field(
        default=None, description="Choose the pipeline run's id: submitting it again answers it"
    )


async def start_pipeline(
    deps: Deps,
    tenant: str,
    body: SubmitPipeline,
    idempotency_key: str | None,
    *,
    parent_run_id: uuid.UUID | None = None,
    submitted_via: str = "rest",
) -> tuple[dict[str, Any], bool]:
    """Check, then store the pipeline's run and steps and submit the steps that need none;
    (row, created). The same Idempotency-Key or run_id again answers the run it made."""
    spec = body.pipeline
    missing = missing_params(spec, body.params)
    if missing:
        raise InvalidRequest(
            f"the pipeline's params {', '.join(missing)} have no default and no value",
            errors=[{"loc": ["body", "params", name], "msg": "required"} for name in missing],
        )
    params = {**spec.params, **body.params}
    await check_steps(deps, tenant, spec, params)
    run_id = body.run_id or uuid.uuid4()
    async with (
        deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
        conn.transaction(),
    ):
        row = await runs_store.insert_pipeline_run(
            conn,
            run_id=run_id,
            tenant=tenant,
            name=spec.name,
            params=params,
            parent_run_id=parent_run_id,
            idempotency_key=idempotency_key,
            deployment=deps.topics.prefix,
            submitted_via=submitted_via,
        )
        if row is None:
            existing = await runs_store.find_submitted(conn, tenant, run_id, idempotency_key)
            if existing is None or existing["category"] != runs_store.PIPELINE_CATEGORY:
                raise Conflict(
                    f"run id {run_id} is already taken; choose another or leave it unset"
                )
            return existing, False
        steps = [(name, step_run_id(run_id, name), "pending") for name in spec.steps]
        workspace = workspace_uri(deps.settings.s3.bucket, tenant, run_id)
        spec_json = spec.model_dump(mode="json")
        await store.insert_pipeline(conn, run_id, spec_json, params, steps, workspace)
        await step_forward(conn, deps.topics, run_id)
    deps.dispatcher.wake()
    found = await runs_store.get_run(deps.pool, tenant, run_id)
    assert found is not None, "stored above"
    return found, True


async def check_steps(
    deps: Deps, tenant: str, spec: PipelineSpec, params: Mapping[str, Any]
) -> None:
    """422 naming the step for an action the tenant cannot run, and for params its schema
    refuses (params that reference earlier steps are checked when those have run)."""
    known = await KnownPlugins.load(deps.pool, tenant, {s.category for s in spec.steps.values()})
    types: dict[str, ActionTypes] = {}
    for name, step in spec.steps.items():
        where = ["body", "pipeline", "steps", name]
        if step.category == runs_store.PIPELINE_CATEGORY:
            raise InvalidRequest(
                f"step {name!r}: a pipeline cannot be a step of another (yet)",
                errors=[{"loc": [*where, "category"], "msg": "not a step category"}],
            )
        try:
            _, action = known.resolve_action(step.plugin, step.category, step.action)
        except GatewayError as exc:
            raise InvalidRequest(
                f"step {name!r}: {exc}", errors=[{"loc": where, "msg": str(exc)}]
            ) from None
        types[name] = _types_of(f"{step.category}.{step.action}", action)
        try:
            values = step_params(spec, name, params, {})
        except PipelineReferenceError:
            continue  # it takes an earlier step's output
        schema = action.get("params_schema")
        problems = validate_params(values, schema if isinstance(schema, Mapping) else {})
        if problems:
            raise InvalidRequest(
                f"step {name!r}: params do not validate against {step.action}'s schema",
                errors=[{**p, "loc": [*where, *p["loc"]]} for p in problems],
            )
    mismatches = check_types(spec, params, types)
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        raise InvalidRequest(
            mismatches[0].message + more,
            errors=[
                {
                    "loc": ["body", "pipeline", "steps", m.step, "params", *m.location],
                    "msg": m.message,
                    "type": "pipeline_type",
                }
                for m in mismatches
            ],
        )


def _types_of(label: str, action: Mapping[str, Any]) -> ActionTypes:
    """The inputs and outputs an action's manifest entry declares (none where it has no
    well-formed declaration: a manifest from before types were declared)."""
    inputs, outputs = action.get("inputs"), action.get("outputs")
    return ActionTypes(
        label,
        inputs={
            path: [str(t) for t in accepted]
            for path, accepted in (inputs.items() if isinstance(inputs, Mapping) else ())
            if isinstance(accepted, list)
        },
        outputs={
            name: given
            for name, given in (outputs.items() if isinstance(outputs, Mapping) else ())
            if isinstance(given, str)
        },
    )
