"""Moving a pipeline forward: which steps to submit, skip or end, decided from its rows.

Called inside the transaction that records a step run's end (the aggregator's batch, a
cancel, the cancel watchdog) or that starts the pipeline, with the pipeline's run and steps
locked: a step's run id is fixed when the pipeline starts and its request is stored with
the step's new state, so whichever gateway replica moves a pipeline, and however often a
batch is redone, each step is submitted exactly once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from runmesh.core.events import TERMINAL_STATES, JsonObject, RunRequest, workspace_prefix
from runmesh.core.notices import NOTIFY_CHANNEL, RunNotice
from runmesh.core.pipelines import PipelineReferenceError, PipelineSpec, step_params
from runmesh.core.run_policy import Placement, Resources
from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.errors import GatewayError
from runmesh.gateway.params_validation import KnownPlugins, validate_params
from runmesh.gateway.pipelines import store
from runmesh.gateway.pipelines.store import StepRow
from runmesh.gateway.run_submission import action_default, store_request
from runmesh.gateway.run_view import mask_secrets

log = logging.getLogger(__name__)

_STEP_RUN_IDS = uuid.UUID("5d3c6f0e-8a51-4c1e-9f6a-2b7e1c0d9a41")
_ENDED = ("succeeded", "failed", "cancelled", "skipped")


def workspace_uri(bucket: str, tenant: str, pipeline_run_id: uuid.UUID) -> str:
    """The URI of a (new) pipeline run's workspace in the platform bucket."""
    return f"s3://{bucket}/{workspace_prefix(tenant, pipeline_run_id)}"


def _workspace_key(uri: str | None) -> str | None:
    """The key prefix of a workspace URI (`runs/<tenant>/<run>/workspace/`)."""
    return None if uri is None else uri.split("/", 3)[3]


def step_run_id(pipeline_run_id: uuid.UUID, step: str) -> uuid.UUID:
    """The run id of a pipeline's step: the same every time it is derived."""
    return uuid.uuid5(_STEP_RUN_IDS, f"{pipeline_run_id}/{step}")


@dataclass(slots=True)
class _Plan:
    """What one pass decides: the steps' new states, their errors, the requests to store."""

    states: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[RunRequest, JsonObject]] = field(default_factory=list)


async def advance(conn: asyncpg.Connection, topics: Topics, ended: Iterable[uuid.UUID]) -> bool:
    """Move the pipelines that any of these just-ended runs is a step of; whether a step's
    request was stored (the outbox relay should be woken after commit)."""
    ended = list(ended)
    if not ended:
        return False
    submitted = False
    for pipeline_run_id in await store.pipelines_of(conn, ended):
        submitted |= await step_forward(conn, topics, pipeline_run_id)
    return submitted


async def step_forward(
    conn: asyncpg.Connection, topics: Topics, pipeline_run_id: uuid.UUID
) -> bool:
    """Bring one pipeline up to date with its steps' runs; whether a request was stored."""
    run = await runs_store.lock_pipeline_run(conn, pipeline_run_id)
    stored = await store.load_pipeline(conn, pipeline_run_id)
    if run is None or stored is None or run["state"] in TERMINAL_STATES:
        return False
    spec = PipelineSpec.model_validate(stored.spec)
    steps = {row.step: row for row in await store.steps_of(conn, pipeline_run_id, lock=True)}
    outcomes = await runs_store.step_outcomes(conn, [row.run_id for row in steps.values()])
    plan = _Plan({name: row.state for name, row in steps.items()})
    for name, row in steps.items():
        outcome = outcomes.get(row.run_id)
        if row.state == "submitted" and outcome is not None and outcome.state in TERMINAL_STATES:
            plan.states[name] = outcome.state
    known = await KnownPlugins.load(conn, run["tenant"], {s.category for s in spec.steps.values()})
    cancelling = run["cancel_requested_at"] is not None
    for name in spec.order():
        if plan.states[name] != "pending":
            continue
        needs = spec.steps[name].needs
        if cancelling:
            plan.states[name] = "cancelled"
        elif any(plan.states[need] in ("failed", "cancelled", "skipped") for need in needs):
            plan.states[name] = "skipped"
        elif all(plan.states[need] == "succeeded" for need in needs):
            results = {
                done: (outcomes[steps[done].run_id].result or {})
                for done in spec.ancestors(name)
                if steps[done].run_id in outcomes
            }
            run_ids = {done: str(steps[done].run_id) for done in spec.ancestors(name)}
            pipeline = _pipeline_values(run["id"], stored)
            try:
                values = step_params(spec, name, stored.params, results, run_ids, pipeline)
            except PipelineReferenceError as exc:
                plan.states[name], plan.errors[name] = "failed", str(exc)
                continue
            _submit(plan, spec, name, steps[name], run, values, known, stored.workspace)
    changed = {
        name: (state, plan.errors.get(name))
        for name, state in plan.states.items()
        if state != steps[name].state or name in plan.errors
    }
    await store.set_step_states(conn, pipeline_run_id, changed)
    for request, redacted in plan.requests:
        await store_request(conn, topics, request, params_redacted=redacted)
    await _report(conn, run, spec, steps, plan, outcomes, cancelling)
    return bool(plan.requests)


def _submit(
    plan: _Plan,
    spec: PipelineSpec,
    name: str,
    row: StepRow,
    run: Mapping[str, Any],
    values: JsonObject,
    known: KnownPlugins,
    workspace: str | None,
) -> None:
    """Plan the step's request with its resolved params, or fail the step before it runs
    with the reason: an unknown action, or params its schema refuses."""
    step = spec.steps[name]
    try:
        _, action = known.resolve_action(step.plugin, step.category, step.action)
    except GatewayError as exc:
        plan.states[name], plan.errors[name] = "failed", str(exc)
        return
    schema = action.get("params_schema")
    schema = schema if isinstance(schema, Mapping) else {}
    problems = validate_params(values, schema)
    if problems:
        listed = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
        plan.states[name], plan.errors[name] = "failed", f"params do not validate: {listed}"
        return
    request = RunRequest(
        run_id=row.run_id,
        category=step.category,
        plugin=step.plugin,
        action=step.action,
        params=values,
        tenant=run["tenant"],
        timeout_s=step.timeout_s,
        max_attempts=step.max_attempts,
        retry_backoff_s=step.retry_backoff_s,
        placement=step.placement or action_default(action, "placement", Placement),
        priority=step.priority or spec.priority,
        resources=step.resources or action_default(action, "resources", Resources),
        parent_run_id=run["id"],
        workspace=_workspace_key(workspace),
    )
    plan.states[name] = "submitted"
    plan.requests.append((request, mask_secrets(values, schema)))


def _pipeline_values(run_id: uuid.UUID, stored: store.StoredPipeline) -> dict[str, str]:
    """What `${{ pipeline.run_id }}` and `${{ pipeline.workspace }}` stand for."""
    values = {"run_id": str(run_id)}
    if stored.workspace is not None:
        values["workspace"] = stored.workspace
    return values


async def _report(
    conn: asyncpg.Connection,
    run: Mapping[str, Any],
    spec: PipelineSpec,
    steps: Mapping[str, StepRow],
    plan: _Plan,
    outcomes: Mapping[uuid.UUID, runs_store.StepOutcome],
    cancelling: bool,
) -> None:
    """The pipeline run's progress (steps ended of all), and its end once no step can run."""
    done = sum(state in _ENDED for state in plan.states.values())
    progress = {"steps": {"current": done, "total": len(plan.states)}}
    run_id, tenant = run["id"], run["tenant"]
    if any(state in ("pending", "submitted") for state in plan.states.values()):
        await runs_store.set_pipeline_progress(conn, run_id, progress)
        notice = RunNotice(tenant=tenant, run_id=run_id, last_id=0, terminal=False)
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, notice.model_dump_json())
        return
    summary = {
        name: {"run_id": str(steps[name].run_id), "state": plan.states[name]} for name in spec.steps
    }
    failed = next((n for n in spec.order() if plan.states[n] in ("failed", "cancelled")), None)
    if failed is None and not cancelling:
        state, error = "succeeded", None
    elif cancelling:
        state, error = "cancelled", None
    else:
        assert failed is not None
        outcome = outcomes.get(steps[failed].run_id)
        why = plan.errors.get(failed) or steps[failed].error
        if why is None and outcome is not None and outcome.error:
            why = str(outcome.error.get("message") or outcome.error.get("type") or "")
        message = f"step {failed!r} {plan.states[failed]}" + (f": {why}" if why else "")
        state, error = "failed", {"type": "StepFailed", "message": message}
    await runs_store.end_pipeline_run(
        conn, run_id, state=state, progress=progress, result={"steps": summary}, error=error
    )
    await runs_store.notify_ended(conn, {run_id: tenant})
    log.info("pipeline run %s %s", run_id, state)
