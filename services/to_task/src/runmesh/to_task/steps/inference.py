"""The `inference` annotation strategy: a neural_net `inference` run predicts, this run keeps.

The model runs where models run: a child run of the neural_net category (the train service's
job process, or any plugin with an `inference` action) submitted over Kafka with this run as
its parent. Its progress becomes this run's `annotate_task_data` progress; cancelling this
run cancels it. Each prediction at or above `confidence_threshold` becomes a box carrying its
`score`: a pre-annotation a person reviews.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

import orjson

from runmesh.core.events import RunEventBase, RunFailed, RunProgress, RunRequest, RunSucceeded
from runmesh.dm import BoundingBox, DMData, DMImage
from runmesh.pipeline.child_runs import ChildRunCancelled, ChildRunError, run_child
from runmesh.storage import StorageError
from runmesh.to_task.context import Annotated, ToTaskContext
from runmesh.to_task.errors import ToTaskError

log = logging.getLogger(__name__)

MODEL_CATEGORY = "neural_net"
MAX_PREDICTIONS_BYTES = 1024 * 1024 * 1024


class InferenceFailedError(ToTaskError):
    """The model's inference run failed or could not run; the message says why."""


async def annotate_with_model(ctx: ToTaskContext) -> None:
    """Run the model over `ctx.to_predict` and turn its predictions into annotations."""
    if not ctx.to_predict:
        return
    params = ctx.params
    total = len(ctx.to_predict)
    ctx.run.log_message_with_code("ANNOTATION_STARTED", total, f"inference, model {params.model}")
    ctx.run.set_progress(0, total, category="annotate_task_data")
    request = RunRequest(
        category=MODEL_CATEGORY,
        action="inference",
        params={
            "model": str(params.model),
            "images_uri": ctx.images_uri,
            "confidence_threshold": params.confidence_threshold,
            "max_detections": params.max_detections,
        },
        tenant=ctx.tenant,
        parent_run_id=ctx.run_id,
    )

    def relay(event: RunEventBase) -> None:
        if isinstance(event, RunProgress) and event.payload.category == "inference":
            ctx.run.set_progress(event.payload.current, total, category="annotate_task_data")

    try:
        terminal = await run_child(
            ctx.settings,
            request,
            timeout_s=params.inference_timeout_s,
            is_cancelled=lambda: ctx.run.is_cancelled,
            on_event=relay,
        )
    except ChildRunCancelled:
        ctx.run.check_cancelled()
        raise
    except ChildRunError as exc:
        raise InferenceFailedError(str(exc)) from exc
    if isinstance(terminal, RunFailed):
        raise InferenceFailedError(
            f"the inference run {request.run_id} failed: {terminal.payload.message}"
        )
    if not isinstance(terminal, RunSucceeded):
        ctx.run.check_cancelled()
        raise InferenceFailedError(f"the inference run {request.run_id} was cancelled")
    result = terminal.payload.result
    uri = result.get("predictions_uri") if isinstance(result, dict) else None
    if not isinstance(uri, str):
        raise InferenceFailedError(f"the inference run {request.run_id} named no predictions")
    predictions = await _read_predictions(ctx, uri)
    for item in ctx.to_predict:
        ctx.counts.stand_by -= 1
        line = predictions.get(item.data_unit_id)
        if line is None:
            ctx.fail(item.data_unit_id, "the inference run returned no prediction for it")
        elif "error" in line:
            ctx.fail(item.data_unit_id, f"inference: {line['error']}")
        else:
            image_name = PurePosixPath(item.files[ctx.primary_spec]["uri"]).name
            image = _pre_annotations(line, image_name, set(ctx.classes))
            ctx.annotated.append(
                Annotated(item.data_unit_id, item.task_id, DMData(images=[image]), item.has_data)
            )
    ctx.run.set_progress(total, total, category="annotate_task_data")
    ctx.report_metrics()


async def _read_predictions(ctx: ToTaskContext, uri: str) -> dict[int, dict[str, Any]]:
    try:
        storage, path = ctx.uris.open(uri)
        data = await storage.read_bytes(path, max_bytes=MAX_PREDICTIONS_BYTES)
    except (StorageError, OSError) as exc:
        raise InferenceFailedError(f"cannot read the predictions at {uri}: {exc}") from exc
    found: dict[int, dict[str, Any]] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
            found[int(line["key"])] = line
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InferenceFailedError(
                f"{uri}: line {number} is not a prediction ({type(exc).__name__}: {exc})"
            ) from exc
    return found


def _pre_annotations(line: dict[str, Any], file_name: str, known: set[str]) -> DMImage:
    """The predictions of one image as DM boxes with scores (classes the project lacks are
    left out: validation checked the model's classes, so none are expected)."""
    boxes = [
        BoundingBox(
            id=f"p{index}",
            class_name=d["class_name"],
            bbox=tuple(d["bbox"]),
            score=d["score"],
        )
        for index, d in enumerate(line["detections"], start=1)
        if d["class_name"] in known
    ]
    return DMImage(
        file_name=file_name, width=line["width"], height=line["height"], annotations=boxes
    )
