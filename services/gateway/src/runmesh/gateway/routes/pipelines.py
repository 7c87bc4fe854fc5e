"""`/v1/pipelines`: start a pipeline (a run whose steps are child runs), and see its steps.

A pipeline's own run is an ordinary run of category `pipeline` under `/v1/runs` (state,
progress over its steps, cancel, SSE); this router adds what only a pipeline has.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, Field

from runmesh.core.events import JsonObject
from runmesh.gateway import runs_store
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import NotFound
from runmesh.gateway.pipelines import store
from runmesh.gateway.pipelines.resume import ResumePipeline, resume_pipeline
from runmesh.gateway.pipelines.start import SubmitPipeline, start_pipeline
from runmesh.gateway.routes.run_ids import RunId
from runmesh.gateway.routes.runs import IdempotencyKey, fetch_run, views
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.gateway.run_view import RunOut

router = APIRouter(prefix="/v1", tags=["pipelines"], route_class=MeasuredRoute)
DepsParam = Annotated[Deps, Depends(get_deps)]


class StepOut(BaseModel):
    """One step of a pipeline run."""

    step: str
    run_id: uuid.UUID = Field(description="The step's run (a child run of the pipeline's)")
    state: str = Field(
        description="pending (waiting for its needs), submitted (its run is queued or "
        "running), succeeded, failed, cancelled, or skipped (a step it needs did not succeed)"
    )
    error: str | None = Field(description="Why it failed before its run began")
    percent: float | None = Field(
        default=None, description="Its run's progress, 0-100 (null before its run exists)"
    )


class PipelineOut(BaseModel):
    """A pipeline run: its run, its definition, its params and its steps."""

    run: RunOut
    pipeline: JsonObject = Field(description="The definition it runs (PipelineSpec)")
    params: JsonObject = Field(description="Its params, defaults merged")
    steps: list[StepOut]


async def _pipeline_out(deps: Deps, tenant: str, row: dict[str, Any]) -> PipelineOut:
    stored = await store.load_pipeline(deps.pool, row["id"])
    if stored is None:
        raise NotFound(f"run {row['id']} is not a pipeline")
    steps = await store.steps_of(deps.pool, row["id"])
    step_runs = await runs_store.get_runs(deps.pool, tenant, [step.run_id for step in steps])
    run, *step_views = await views(deps, tenant, [row, *step_runs])
    percent = {view.id: view.percent for view in step_views}
    return PipelineOut(
        run=run,
        pipeline=stored.spec,
        params=stored.params,
        steps=[
            StepOut.model_validate(
                {**dataclasses.asdict(step), "percent": percent.get(step.run_id)}
            )
            for step in steps
        ],
    )


@router.post(
    "/pipelines",
    status_code=202,
    response_model=PipelineOut,
    summary="Start a pipeline",
    responses={
        200: {"model": PipelineOut, "description": "The run this Idempotency-Key already made"},
        202: {"description": "Accepted: the steps that need none are queued"},
        **problems(401, 409, 422),
    },
)
async def submit_pipeline(
    body: SubmitPipeline,
    response: Response,
    request: Request,
    tenant: Tenant,
    deps: DepsParam,
    idempotency_key: IdempotencyKey = None,
) -> PipelineOut:
    """Check the definition (steps, needs, references, the tenant's plugins and the params of
    the steps that take no earlier output) and start it: 202 with the pipeline run. A step
    starts once every step it `needs` succeeded, with its references resolved; a failed step
    skips what depends on it while independent steps go on."""
    row, created = await start_pipeline(deps, tenant, body, idempotency_key)
    if not created:
        response.status_code = 200
    return await _pipeline_out(deps, tenant, row)


@router.get(
    "/pipelines/{run_id}",
    response_model=PipelineOut,
    summary="Get a pipeline run and its steps",
    responses=problems(401, 404, 422),
)
async def get_pipeline(run_id: RunId, tenant: Tenant, deps: DepsParam) -> PipelineOut:
    """The pipeline run, its definition and params, and each step's state and run."""
    row = await fetch_run(deps.pool, tenant, run_id)
    if row["category"] != runs_store.PIPELINE_CATEGORY:
        raise NotFound(f"run {run_id} is not a pipeline")
    return await _pipeline_out(deps, tenant, row)


@router.post(
    "/pipelines/{run_id}/resume",
    status_code=202,
    response_model=PipelineOut,
    summary="Resume a failed or cancelled pipeline",
    responses=problems(401, 404, 409, 422),
)
async def resume(
    run_id: RunId,
    tenant: Tenant,
    deps: DepsParam,
    body: Annotated[ResumePipeline | None, Body()] = None,
) -> PipelineOut:
    """A new pipeline run (`parent_run_id` = this one) of the same definition: the steps that
    succeeded are taken over with their runs and results, the others run again, with `params`
    changed where the body says so. 409 for a pipeline run that is not failed or cancelled."""
    row = await resume_pipeline(deps, tenant, run_id, body or ResumePipeline())
    return await _pipeline_out(deps, tenant, row)
