"""Resuming a pipeline that failed or was cancelled: a new pipeline run of the same
definition that takes over the steps that succeeded (their runs and results) and runs the
others again."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runmesh.core.events import JsonObject
from runmesh.core.pipelines import PipelineSpec, missing_params
from runmesh.gateway import runs_store
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import Conflict, InvalidRequest, NotFound
from runmesh.gateway.pipelines import store
from runmesh.gateway.pipelines.forward import step_forward, step_run_id, workspace_uri
from runmesh.gateway.pipelines.start import check_steps

RESUMABLE = ("failed", "cancelled")


class ResumePipeline(BaseModel):
    """Params to change for the resumed run (the others keep their earlier values)."""

    model_config = ConfigDict(extra="forbid")

    params: JsonObject = Field(default_factory=dict, description="Params to change")


async def resume_pipeline(
    deps: Deps, tenant: str, run_id: uuid.UUID, body: ResumePipeline
) -> dict[str, Any]:
    """Start the new pipeline run (its `parent_run_id` is `run_id`): 409 unless `run_id` is
    a pipeline run that failed or was cancelled."""
    earlier = await runs_store.get_run(deps.pool, tenant, run_id)
    stored = await store.load_pipeline(deps.pool, run_id)
    if earlier is None or stored is None:
        raise NotFound(f"pipeline run {run_id} not found")
    if earlier["state"] not in RESUMABLE:
        raise Conflict(
            f"pipeline run {run_id} is {earlier['state']}: only a failed or cancelled one "
            "can be resumed",
            state=earlier["state"],
        )
    spec = PipelineSpec.model_validate(stored.spec)
    params = {**stored.params, **body.params}
    missing = missing_params(spec, params)
    if missing:  # a definition stored before a param lost its value cannot resume as it is
        raise InvalidRequest(f"the pipeline's params {', '.join(missing)} have no value")
    await check_steps(deps, tenant, spec, params)
    new_id = uuid.uuid4()
    async with (
        deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
        conn.transaction(),
    ):
        row = await runs_store.insert_pipeline_run(
            conn,
            run_id=new_id,
            tenant=tenant,
            name=spec.name,
            params=params,
            parent_run_id=run_id,
            idempotency_key=None,
            deployment=deps.topics.prefix,
        )
        assert row is not None, "a fresh id"
        steps = [
            (each.step, each.run_id, "succeeded")
            if each.state == "succeeded"
            else (each.step, step_run_id(new_id, each.step), "pending")
            for each in await store.steps_of(conn, run_id)
        ]
        # The steps taken over wrote into the earlier run's workspace: the new run shares it.
        workspace = stored.workspace or workspace_uri(deps.settings.s3.bucket, tenant, new_id)
        await store.insert_pipeline(conn, new_id, stored.spec, params, steps, workspace)
        await step_forward(conn, deps.topics, new_id)
    deps.dispatcher.wake()
    found = await runs_store.get_run(deps.pool, tenant, new_id)
    assert found is not None, "stored above"
    return found
