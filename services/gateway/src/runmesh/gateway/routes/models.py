"""`/v1/models`: the models train, tune and import_model runs registered. Runs write them:
`POST /v1/models` queues the import_model run that registers a team's ONNX detector."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from runmesh.catalog import trained_models
from runmesh.core.events import JsonObject
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import NotFound
from runmesh.gateway.routes.pagination import cursor_page, decode_cursor
from runmesh.gateway.routes.runs import IdempotencyKey, submitted
from runmesh.gateway.routes.support import MeasuredRoute, problems
from runmesh.gateway.run_submission import SubmitRun
from runmesh.gateway.run_view import RunOut

router = APIRouter(prefix="/v1", route_class=MeasuredRoute)

DepsParam = Annotated[Deps, Depends(get_deps)]
ModelId = Annotated[uuid.UUID, Path(description="The model's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]
_TAG = "models"


class ModelOut(BaseModel):
    """A trained model: where its weights are, what it was trained on, how well it did."""

    model_config = ConfigDict(from_attributes=True)  # validated from its catalog row

    id: uuid.UUID
    name: str
    description: str
    plugin: str = Field(description="Code of the plugin that trained it")
    plugin_version: str
    action: str = Field(description="`train`, `tune` or `import_model`")
    run_id: uuid.UUID = Field(description="The run that trained it")
    base_model_id: uuid.UUID | None = Field(description="The model it was fine-tuned from")
    dataset: JsonObject = Field(description="What it was trained on")
    classes: list[str] = Field(description="Its output classes, in order")
    params: JsonObject = Field(
        description="The hyperparameters it was trained with; an imported model's "
        "`{format: onnx, layout, source}`"
    )
    metrics: dict[str, float] = Field(description="Its final validation metrics")
    artifact_uri: str = Field(description="Where its weights are (s3://...)")
    created_at: datetime


class ModelList(BaseModel):
    """One page of models, newest first."""

    items: list[ModelOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end")


@router.get(
    "/models",
    response_model=ModelList,
    summary="List models",
    tags=[_TAG],
    responses=problems(401, 422),
)
async def list_models(
    tenant: Tenant, deps: DepsParam, cursor: Cursor = None, limit: Limit = 50
) -> ModelList:
    """The tenant's trained models, newest first; page with `next_cursor` until it is null."""
    rows = await trained_models.list_models(
        deps.pool,
        tenant,
        before=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    page, next_cursor = cursor_page(rows, limit)
    return ModelList(items=[ModelOut.model_validate(row) for row in page], next_cursor=next_cursor)


@router.get(
    "/models/{model_id}",
    response_model=ModelOut,
    summary="Get a model",
    tags=[_TAG],
    responses=problems(401, 404, 422),
)
async def get_model(model_id: ModelId, tenant: Tenant, deps: DepsParam) -> ModelOut:
    """One model of the tenant: its metrics, params, dataset and weights' URI."""
    row = await trained_models.get_model(deps.pool, tenant, model_id)
    if row is None:
        raise NotFound(f"model {model_id} not found")
    return ModelOut.model_validate(row)


class ImportModel(BaseModel):
    """A detector trained elsewhere, as an ONNX file in a storage of the tenant's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The model's name (unique)")
    description: str = Field(default="", max_length=2000)
    uri: str = Field(
        min_length=1, max_length=2000, description="The .onnx file (s3://... of the tenant's)"
    )
    layout: str = Field(
        description="Its outputs' layout: yolov8, yolov5, torchvision or boxes_scores_classes "
        "(docs/train.md#import_model)"
    )
    classes: list[str] = Field(
        min_length=1, max_length=10_000, description="Its class names, in output order"
    )


@router.post(
    "/models",
    status_code=202,
    response_model=RunOut,
    summary="Import an ONNX model",
    tags=[_TAG],
    responses={
        200: {"model": RunOut, "description": "The run this Idempotency-Key already made"},
        202: {"description": "Accepted: the import_model run is queued"},
        **problems(401, 409, 422, 429),
    },
)
async def import_model(
    body: ImportModel,
    request: Request,
    response: Response,
    tenant: Tenant,
    deps: DepsParam,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    """Queue the neural_net `import_model` run that checks the file (it loads and runs it in
    its layout) and registers the model: 202 with the run; the model is listed once the run
    succeeds (its result has `model_id`), and a file that does not fit fails the run, saying
    why. As `POST /v1/runs`, the same `Idempotency-Key` answers the same run."""
    submission = SubmitRun(
        category="neural_net", action="import_model", params=body.model_dump(mode="json")
    )
    return await submitted(deps, tenant, submission, idempotency_key, request, response)
