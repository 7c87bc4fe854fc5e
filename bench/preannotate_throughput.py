"""Pre-annotation throughput with an imported ONNX model (issue 18): N images pre-annotated by
to_task's `inference` method vs onnxruntime over the same images in one process.

The model is a small convolutional detector in the YOLOv8 layout, built here with onnx's
helper API (fixed random weights; `[B, 3, 64, 64]` in, `[B, 4 + 3, 256]` out: a 16 x 16 grid
of boxes), imported once through `import_model` (not timed). The images are N 64 x 64 PNGs
in the sandbox's moto bucket, one per data unit of a collection, under a fresh project.

Value: images/s of one to_task run (`method: inference`, `batch_size` BATCH, threshold
THRESHOLD) from its submission to its `run.succeeded`: the to_task job lists the units and
creates the tasks, writes the images list, runs the neural_net `inference` child run (a job
of the train service: reads every image from S3, detects BATCH at a time, writes the
predictions file) and reads the predictions back into every task's DM document.

Baseline, in the same run, over the same images: a plain script in one process: aiobotocore
reads every PNG (CONCURRENCY at a time, as the inference action's default), Pillow decodes
it, and runmesh's own `OnnxDetector` (onnxruntime and the same box decoding, so both sides
find the same boxes) detects BATCH at a time. It writes nothing. Ratio = value / baseline
(aim >= 0.8). Both sides' box counts are compared.

Both sides run in this one process: the workers are in-process (their jobs are child
processes); onnxruntime uses one thread per call on both sides.

`phases_s` splits the to_task run at its log codes: dispatch (request to run.started),
job_start, validate_extract (listing the units, creating the tasks), preprocess (the images
list), inference (the child run: reading, detecting, the predictions file; then reading it
back) and save (the tasks' documents, to run.succeeded).

`--images N` changes the number of images (default 2,000).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
import uuid
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from support.runs import BenchWorker  # bench/support, on the script's path

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import DataCollectionCreate, LabelSchema, ProjectCreate
from runmesh.catalog.repository import DataFile, NewDataUnit
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.sandbox import Sandbox
from runmesh.storage import platform_storage
from runmesh.to_task import BUILTIN_PLUGIN as TO_TASK_PLUGIN
from runmesh.train import BUILTIN_PLUGIN as TRAIN_PLUGIN
from runmesh.train.dataset import MAX_IMAGE_BYTES, decode_image
from runmesh.train.model.onnx_detector import OnnxDetector

IMAGES = 2_000
BATCH = 8
THRESHOLD = 0.5
CONCURRENCY = 8
CLASSES = ["cat", "dog", "person"]
TENANT = "bench"
RUN_TIMEOUT_S = 1800
# The to_task log codes that end a phase of its run, and the phase each one ends.
PHASES = {
    "TO_TASK_STARTED": "job_start",
    "TASKS_READY": "validate_extract",
    "ANNOTATION_STARTED": "preprocess",
    "ANNOTATION_COMPLETED": "inference",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_bytes() -> bytes:
    """Conv(3->16, 3x3, /2), ReLU, Conv(16->16, 3x3, /2), ReLU, Conv(16->7, 1x1): 7 maps of
    16 x 16, as [B, 7, 256] through a sigmoid; the 4 box rows scaled to the input's 64 pixels,
    the class rows' bias keeps a few cells over the threshold."""
    rng = np.random.default_rng(3)
    outputs = 4 + len(CLASSES)
    bias = np.zeros(outputs, dtype=np.float32)
    bias[4:] = -1.5
    scale = np.ones((1, outputs, 1), dtype=np.float32)
    scale[0, :4, 0] = 64.0
    constants: dict[str, npt.NDArray[Any]] = {
        "w1": (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32),
        "w3": (rng.standard_normal((outputs, 16, 1, 1)) * 0.5).astype(np.float32),
        "b3": bias,
        "grid": np.array([0, outputs, -1], dtype=np.int64),
        "scale": scale,
    }
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Reshape", ["c3", "grid"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["squashed"]),
        helper.make_node("Mul", ["squashed", "scale"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", outputs, 256])],
        initializer=[numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


def png(rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


async def seed(settings: Settings, count: int, model: bytes) -> tuple[uuid.UUID, list[str], str]:
    """The images in S3 as a collection's units, a fresh project over them, the model file;
    (project, image URIs, model URI)."""
    rng = np.random.default_rng(5)
    units: list[NewDataUnit] = []
    uris: list[str] = []
    limit = asyncio.Semaphore(32)
    async with platform_storage(settings.s3) as bucket:

        async def put(index: int) -> None:
            body = png(rng)
            path = f"{TENANT}/images/i{index:06d}.png"
            async with limit:
                await bucket.write_bytes(path, body)
            uris.append(bucket.url(path))
            units.append(
                NewDataUnit(
                    unit_key=f"i{index:06d}",
                    files={
                        "image": DataFile(
                            uri=bucket.url(path),
                            size=len(body),
                            checksum=None,
                            media_type="image/png",
                        )
                    },
                )
            )

        await asyncio.gather(*(put(index) for index in range(count)))
        await bucket.write_bytes(f"{TENANT}/models/bench.onnx", model)
        model_uri = bucket.url(f"{TENANT}/models/bench.onnx")
    units.sort(key=lambda unit: unit.unit_key)
    pool = await create_pool(settings.database, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
        async with pool.acquire() as conn:
            collection = await repository.create_collection(
                conn,
                TENANT,
                DataCollectionCreate.model_validate(
                    {
                        "name": f"images-{uuid.uuid4().hex[:6]}",
                        "file_specifications": [
                            {
                                "name": "image",
                                "required": True,
                                "extensions": [".png"],
                                "is_primary": True,
                            }
                        ],
                    }
                ),
            )
            await repository.upsert_data_units(conn, TENANT, collection.id, None, units)
            project = await annotation.create_project(
                conn,
                TENANT,
                ProjectCreate(
                    name=f"bench-{uuid.uuid4().hex[:6]}",
                    data_collection_id=collection.id,
                    annotation_type="image_detection",
                    label_schema=LabelSchema.model_validate(
                        {"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]}
                    ),
                ),
            )
    finally:
        await pool.close()
    return project.id, sorted(uris), model_uri


async def mesh_run(
    settings: Settings, project: uuid.UUID, model_uri: str
) -> tuple[float, dict[str, Any], dict[str, float]]:
    """Import the model (not timed), then time one to_task inference run from its request to
    its end: (seconds, result, seconds of each phase)."""
    async with (
        BenchWorker(settings, "neural_net", TRAIN_PLUGIN, service="train") as nets,
        BenchWorker(settings, "pre_annotation", TO_TASK_PLUGIN, service="to_task") as to_tasks,
    ):
        imported = await nets.run(
            RunRequest(
                category="neural_net",
                action="import_model",
                tenant=TENANT,
                params={"name": "bench", "uri": model_uri, "layout": "yolov8", "classes": CLASSES},
            ),
            label="import_model",
            timeout_s=300,
        )
        ended = await to_tasks.run(
            RunRequest(
                category="pre_annotation",
                action="to_task",
                tenant=TENANT,
                params={
                    "name": "bench-inference",
                    "project": str(project),
                    "method": "inference",
                    "model": imported.result["model_id"],
                    "confidence_threshold": THRESHOLD,
                },
            ),
            label="to_task inference",
            timeout_s=RUN_TIMEOUT_S,
            codes=PHASES,
        )
    # Each phase ends at its log code; the last, `save`, at the run's end.
    marks = [ended.produced, ended.started, *(ended.marks[code] for code in PHASES)]
    names = ["dispatch", *PHASES.values(), "save"]
    ends = [*marks[1:], ended.ended]
    phases = {
        name: round((end - begin).total_seconds(), 3)
        for name, begin, end in zip(names, marks, ends, strict=True)
    }
    return ended.seconds(from_request=True), ended.result, phases


async def baseline_run(settings: Settings, uris: list[str], model: bytes) -> tuple[float, int]:
    """Read, decode and detect every image in this process: (seconds, boxes found)."""
    began = time.perf_counter()
    detector = OnnxDetector(model, "yolov8", CLASSES, batch_size=BATCH)
    limit = asyncio.Semaphore(CONCURRENCY)
    boxes = 0
    async with platform_storage(settings.s3) as bucket:

        async def read(uri: str) -> np.ndarray:
            async with limit:
                path = uri.removeprefix(f"s3://{settings.s3_bucket}/")
                data = await bucket.read_bytes(path, max_bytes=MAX_IMAGE_BYTES)
                return await asyncio.to_thread(decode_image, data)

        for start in range(0, len(uris), 64):
            images = await asyncio.gather(*(read(uri) for uri in uris[start : start + 64]))
            found = await asyncio.to_thread(
                detector.detect_batch, images, threshold=THRESHOLD, max_detections=100
            )
            boxes += sum(len(image) for image in found)
    return time.perf_counter() - began, boxes


async def mesh_boxes(settings: Settings, project: uuid.UUID) -> int:
    """The boxes the to_task run saved in the project's tasks."""
    pool = await create_pool(settings.database, min_size=1, max_size=1)
    boxes, after = 0, 0
    try:
        while rows := await annotation.list_tasks(
            pool, TENANT, project_id=project, after_id=after, limit=1000
        ):
            boxes += sum(len(row.data["images"][0]["annotations"]) for row in rows if row.data)
            after = rows[-1].id
    finally:
        await pool.close()
    return boxes


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=IMAGES)
    count = parser.parse_args().images
    model = model_bytes()
    async with Sandbox(Settings()) as sandbox:
        settings = sandbox.settings.model_copy(
            update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}", "job_memory_limit": "off"}
        )
        began = time.perf_counter()
        project, uris, model_uri = await seed(settings, count, model)
        log(f"seeded {count} 64 x 64 PNGs in {time.perf_counter() - began:.1f}s")
        mesh_s, result, phases = await mesh_run(settings, project, model_uri)
        if result.get("annotated") != count or result.get("failed"):
            raise RuntimeError(f"the to_task run annotated {result.get('annotated')} of {count}")
        log(f"to_task inference: {mesh_s:.2f}s, {count / mesh_s:.1f} images/s, phases {phases}")
        base_s, base_boxes = await baseline_run(settings, uris, model)
        log(f"baseline (aiobotocore + OnnxDetector): {base_s:.2f}s, {count / base_s:.1f} images/s")
        boxes = await mesh_boxes(settings, project)
        if boxes != base_boxes:
            raise RuntimeError(f"the mesh saved {boxes} boxes, the baseline found {base_boxes}")
        log(f"both found {boxes} boxes")
    value, baseline = count / mesh_s, count / base_s
    log(f"ratio {value / baseline:.3f} (aim >= 0.8)")
    print(
        json.dumps(
            {
                "bench": "preannotate_throughput",
                "value": round(value, 1),
                "unit": "images/s",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "images": count,
                "boxes": boxes,
                "batch_size": BATCH,
                "mesh_s": round(mesh_s, 3),
                "baseline_s": round(base_s, 3),
                "phases_s": phases,
                "baseline_desc": f"aiobotocore reads ({CONCURRENCY} at a time), Pillow decodes, "
                f"OnnxDetector detects {BATCH} at a time, in one process; writes nothing",
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
