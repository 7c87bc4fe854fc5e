"""`BaseInference`: detect objects with a registered model in a list of images.

The list comes as a JSON-lines file in storage (`{"key": ..., "uri": ...}` per image) and
the predictions go back as one (`{"key", "width", "height", "detections": [{"class_name",
"bbox", "score"}]}` or `{"key", "error"}` per image), so a run over 10,000 images moves no
large message through Kafka. An image that cannot be read is an error line, not a failed run.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

import orjson
from PIL import Image

from runmesh.catalog import trained_models
from runmesh.plugins import Action
from runmesh.storage import StorageError, TenantUris
from runmesh.train.artifacts import load_model
from runmesh.train.dataset import MAX_IMAGE_BYTES, ImageArray, decode_image
from runmesh.train.errors import DatasetError, ModelNotFoundError
from runmesh.train.model import Detection
from runmesh.train.model.onnx_detector import AnyDetector
from runmesh.train.params import InferenceParams
from runmesh.train.resources import run_resources

MAX_LIST_BYTES = 256 * 1024 * 1024
_CHUNK = 64  # images between progress reports and cancellation checks

LOG_MESSAGES = {
    "INFERENCE_STARTED": {"message": "inference with model {} on {} images", "level": "info"},
    "INFERENCE_COMPLETED": {
        "message": "inference done: {} detections in {} images, {} failed",
        "level": "success",
    },
}


class BaseInference(Action[InferenceParams]):
    """Runs a registered model over images; used by to_task's `inference` method."""

    name = "inference"
    params_model = InferenceParams
    progress_categories: ClassVar = {
        "inference": {"description": "Predicting, per image", "proportion": 100}
    }
    metrics_categories: ClassVar = {"inference": "images, detections, failed"}
    log_messages: ClassVar = LOG_MESSAGES

    async def start(self) -> dict[str, object]:
        """Predict on every listed image; the result says where the predictions are."""
        params = self.params
        run = self.run
        async with run_resources(run, "inference", kind="runs") as res:
            settings, tenant, pool = res.settings, res.tenant, res.pool
            uris, artifacts = res.uris, res.artifacts
            async with pool.acquire(timeout=30) as conn:
                model = await trained_models.get_model(conn, tenant, params.model)
            if model is None:
                raise ModelNotFoundError(f"model: model {params.model} not found")
            detector = await load_model(model, uris, batch_size=params.batch_size)
            images = await _read_list(params.images_uri, settings, uris)
            run.log_message_with_code("INFERENCE_STARTED", model.id, len(images))
            lines: list[bytes] = []
            detections = failed = 0
            limit = asyncio.Semaphore(params.max_concurrency)

            for start in range(0, len(images), _CHUNK):
                run.check_cancelled()
                chunk = images[start : start + _CHUNK]
                for line in await _predict_chunk(chunk, detector, params, uris, limit):
                    lines.append(orjson.dumps(line))
                    if "error" in line:
                        failed += 1
                    else:
                        detections += len(line["detections"])
                done = start + len(chunk)
                run.set_progress(done, len(images), category="inference")
                run.set_metrics(
                    {"images": done, "detections": detections, "failed": failed}, "inference"
                )
            stored = await artifacts.save_file("predictions.jsonl", b"\n".join(lines) + b"\n")
            run.log_artifact(
                "predictions",
                stored.uri,
                size=stored.size,
                checksum=stored.checksum,
                media_type="application/jsonl",
            )
            run.log_message_with_code("INFERENCE_COMPLETED", detections, len(images), failed)
            return {
                "model_id": str(model.id),
                "classes": detector.classes,
                "predictions_uri": stored.uri,
                "images": len(images),
                "detections": detections,
                "failed": failed,
            }


async def _read_list(uri: str, settings: Any, uris: TenantUris) -> list[tuple[Any, str]]:
    """The (key, uri) pairs of the images file; `DatasetError` names a bad line."""
    try:
        storage, path = uris.open(uri)
        async with asyncio.timeout(120):
            data = await storage.read_bytes(path, max_bytes=MAX_LIST_BYTES)
    except (StorageError, OSError, TimeoutError) as exc:
        raise DatasetError(f"images_uri: cannot read {uri}: {exc}") from exc
    images: list[tuple[Any, str]] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"images_uri: line {number} is not JSON: {exc}") from exc
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
            raise DatasetError(f'images_uri: line {number} is not {{"key": ..., "uri": "..."}}')
        images.append((entry.get("key"), entry["uri"]))
    return images


async def _predict_chunk(
    chunk: list[tuple[Any, str]],
    detector: AnyDetector,
    params: InferenceParams,
    uris: TenantUris,
    limit: asyncio.Semaphore,
) -> list[dict[str, Any]]:
    """The prediction lines of a chunk of images, in order: the images are read at once
    (`max_concurrency`), then detected `batch_size` at a time, batches side by side."""

    async def read(key: Any, uri: str) -> ImageArray | dict[str, Any]:
        async with limit:
            try:
                storage, path = uris.open(uri)
                async with asyncio.timeout(120):
                    data = await storage.read_bytes(path, max_bytes=MAX_IMAGE_BYTES)
                return await asyncio.to_thread(decode_image, data)
            except (StorageError, OSError, TimeoutError, Image.DecompressionBombError) as exc:
                return {"key": key, "error": f"cannot read {uri}: {type(exc).__name__}: {exc}"}

    read_back = await asyncio.gather(*(read(key, uri) for key, uri in chunk))
    readable = [i for i, item in enumerate(read_back) if not isinstance(item, dict)]

    async def detect(indices: list[int]) -> list[list[Detection]]:
        async with limit:
            return await asyncio.to_thread(
                detector.detect_batch,
                [cast("ImageArray", read_back[i]) for i in indices],
                threshold=params.confidence_threshold,
                max_detections=params.max_detections,
            )

    batches = [
        readable[start : start + params.batch_size]
        for start in range(0, len(readable), params.batch_size)
    ]
    found = {
        index: detections
        for batch, results in zip(
            batches, await asyncio.gather(*(detect(b) for b in batches)), strict=True
        )
        for index, detections in zip(batch, results, strict=True)
    }
    lines: list[dict[str, Any]] = []
    for index, (key, _) in enumerate(chunk):
        item = read_back[index]
        if isinstance(item, dict):
            lines.append(item)
            continue
        lines.append(
            {
                "key": key,
                "width": int(item.shape[1]),
                "height": int(item.shape[0]),
                "detections": [
                    {"class_name": d.class_name, "bbox": list(d.box), "score": d.score}
                    for d in found[index]
                ],
            }
        )
    return lines
