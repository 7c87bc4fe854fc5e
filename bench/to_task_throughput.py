"""To-task throughput: 10,000 data units pre-annotated from their COCO files in S3.

Value: the built-in to_task action (a `job` on an in-process to_task worker, category
`pre_annotation`) with `method=file`, `annotation_format=coco` and its default batch size
and concurrency, over a collection of N data units in the sandbox's moto bucket, each with a
small PNG (`image`, the primary file) and a one-image COCO file (`label`) of BOXES boxes of a
3-class label schema: tasks/s = N / (seconds from submitting the request to receiving the
run's `run.succeeded`). A run's time thus includes the dispatch to the worker, the job's
start, the task creation (upserts), reading and converting every file, the checks against
the label schema and saving every task's DM document. The run's result must say N tasks
created, N annotated, none skipped or failed.

Baseline, in the same run, on a second, fresh project over the same units: the plainest fast
script a data engineer would write: asyncpg lists the collection's units, aiobotocore reads
each unit's COCO file (CONCURRENCY at a time, as the action's default `max_concurrency`),
`parse_coco_file` converts it into the same DM document the action stores (the image named
after the unit's PNG), and `executemany` inserts the task rows (tenant, project, data unit,
data, status) in batches of INSERT_BATCH. Its seconds include connecting to PostgreSQL and
creating the S3 client. Ratio = value / baseline (aim: >= 0.8). Both projects' documents are
compared afterwards: they must be identical, unit by unit.

`phases_s` splits the action's run at its events: dispatch (submit to run.started), job_start
(to the action's first log), validate_extract (to TASKS_READY: the pool, the project, listing
the units and creating the tasks), annotate (ANNOTATION_STARTED to the last `annotation`
metric before any task is saved: reading and converting the files), save (to
ANNOTATION_COMPLETED) and finish (to run.succeeded: closing, the result, the job's exit).

`--units N` changes the number of data units (default 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer
from PIL import Image

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import DataCollectionCreate, LabelSchema, ProjectCreate
from runmesh.catalog.repository import DataFile, NewDataUnit
from runmesh.converters.coco import parse_coco_file
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import (
    RunCancelled,
    RunFailed,
    RunLog,
    RunMetric,
    RunRequest,
    RunStarted,
    RunSucceeded,
    decode_event,
    encode,
)
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer, pin_to_latest
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.dm import DMData
from runmesh.sandbox import Sandbox
from runmesh.to_task import BUILTIN_PLUGIN
from runmesh.worker import Worker
from runmesh.worker.process import build_registry

UNITS = 10_000
BOXES = 4
CLASSES = ["cat", "dog", "person"]
SIZES = [(64, 48), (40, 40), (32, 60)]
CONCURRENCY = 8  # files read at once: the action's default `max_concurrency`, and the baseline's
SEED_CONCURRENCY = 32
SEED_BATCH = 2_000
INSERT_BATCH = 1_000
CATEGORY = "pre_annotation"
TENANT = "bench"
RUN_TIMEOUT_S = 1800
# The action's log codes that end a phase, and the phase each one ends.
LOG_PHASES = {
    "TO_TASK_STARTED": "job_start",
    "TASKS_READY": "validate_extract",
    "ANNOTATION_STARTED": "preprocess",
    "ANNOTATION_COMPLETED": "save",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(slots=True)
class Seeded:
    """The seeded collection and the two fresh projects over it."""

    collection: uuid.UUID
    mesh_project: uuid.UUID
    baseline_project: uuid.UUID
    unit_ids: list[int] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Measured:
    """The action's run: its seconds (submit to run.succeeded), result and phases."""

    seconds: float
    result: dict[str, Any]
    phases: dict[str, float]


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(out, format="PNG")
    return out.getvalue()


def coco_file(rng: random.Random, key: str, width: int, height: int) -> bytes:
    """A one-image COCO document of BOXES boxes, as a per-image export writes it."""
    annotations = []
    for k in range(BOXES):
        w = round(rng.uniform(2, width / 3), 2)
        h = round(rng.uniform(2, height / 3), 2)
        x = round(rng.uniform(0, width - w - 1), 2)
        y = round(rng.uniform(0, height - h - 1), 2)
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": rng.randrange(len(CLASSES)) + 1,
                "bbox": [x, y, w, h],
                "area": round(w * h, 4),
                "iscrowd": 0,
                "segmentation": [],
            }
        )
    return orjson.dumps(
        {
            "images": [{"id": 1, "file_name": f"{key}.png", "width": width, "height": height}],
            "annotations": annotations,
            "categories": [
                {"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(CLASSES)
            ],
        }
    )


def s3_client(settings: Settings) -> Any:  # Any: aiobotocore clients are untyped
    extra: dict[str, Any] = {"region_name": settings.s3_region}
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        extra["aws_access_key_id"] = settings.s3_access_key_id
        extra["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return get_session().create_client("s3", endpoint_url=settings.s3_endpoint_url, **extra)


async def upload_files(settings: Settings, count: int) -> list[NewDataUnit]:
    """Put every unit's PNG and COCO file into the bucket; the units, in key order."""
    rng = random.Random(7)
    pngs = {size: png(size) for size in SIZES}
    bucket = settings.s3_bucket
    limit = asyncio.Semaphore(SEED_CONCURRENCY)
    units: list[NewDataUnit] = []

    async def put(client: Any, key: str, body: bytes, media_type: str) -> DataFile:
        async with limit:
            await client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=media_type)
        return DataFile(
            uri=f"s3://{bucket}/{key}", size=len(body), checksum=None, media_type=media_type
        )

    async with s3_client(settings) as client:
        for start in range(0, count, SEED_BATCH):
            keys = [f"u{index:06d}" for index in range(start, min(count, start + SEED_BATCH))]
            files = []
            for index, key in enumerate(keys, start=start):
                size = SIZES[index % len(SIZES)]
                files.append(
                    (
                        put(client, f"{TENANT}/images/{key}.png", pngs[size], "image/png"),
                        put(
                            client,
                            f"{TENANT}/labels/{key}.json",
                            coco_file(rng, key, *size),
                            "application/json",
                        ),
                    )
                )
            stored = await asyncio.gather(*itertools.chain.from_iterable(files))
            for position, key in enumerate(keys):
                image, label = stored[2 * position], stored[2 * position + 1]
                units.append(NewDataUnit(unit_key=key, files={"image": image, "label": label}))
    return units


async def seed(settings: Settings, count: int) -> Seeded:
    """N data units with their files in S3, their collection, and two fresh projects."""
    units = await upload_files(settings, count)
    pool = await create_pool(settings.database, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
        async with pool.acquire() as conn:
            collection = await repository.create_collection(
                conn,
                TENANT,
                DataCollectionCreate.model_validate(
                    {
                        "name": f"col-{uuid.uuid4().hex[:6]}",
                        "file_specifications": [
                            {
                                "name": "image",
                                "required": True,
                                "extensions": [".png"],
                                "is_primary": True,
                            },
                            {"name": "label", "required": True, "extensions": [".json"]},
                        ],
                    }
                ),
            )
            schema = LabelSchema.model_validate(
                {"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]}
            )
            projects = [
                await annotation.create_project(
                    conn,
                    TENANT,
                    ProjectCreate(
                        name=f"{role}-{uuid.uuid4().hex[:6]}",
                        data_collection_id=collection.id,
                        annotation_type="image_detection",
                        label_schema=schema,
                    ),
                )
                for role in ("mesh", "baseline")
            ]
            seeded = Seeded(collection.id, projects[0].id, projects[1].id)
            for start in range(0, len(units), SEED_BATCH):
                seeded.unit_ids += await repository.upsert_data_units(
                    conn, TENANT, collection.id, None, units[start : start + SEED_BATCH]
                )
    finally:
        await pool.close()
    return seeded


# -- the mesh: the to_task action on its service's worker --------------------------------------


async def mesh_run(settings: Settings, seeded: Seeded) -> Measured:
    """One to_task run over every unit, timed from its submission to its run.succeeded."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(
        settings.kafka,
        [
            topics.requests(CATEGORY),
            topics.dlq(CATEGORY),
            topics.events,
            topics.control,
            topics.plugins,
        ],
    )
    worker = Worker(
        CATEGORY, build_registry(settings, [BUILTIN_PLUGIN]), settings, service="to_task"
    )
    worker_task = asyncio.create_task(worker.run())
    async with asyncio.timeout(60):
        await worker.ready.wait()
    consumer = AIOKafkaConsumer(topics.events, **consumer_config(settings.kafka, group_id=None))
    producer = make_producer(settings.kafka)
    await consumer.start()
    await producer.start()
    try:
        await pin_to_latest(consumer, timeout_s=30)
        request = RunRequest(
            category=CATEGORY,
            action="to_task",
            tenant=TENANT,
            params={
                "name": "bench-to-task",
                "project": str(seeded.mesh_project),
                "method": "file",
                "target_specification_name": "label",
                "annotation_format": "coco",
            },
        )
        submitted = datetime.now(UTC)
        began = time.perf_counter()
        await producer.send_and_wait(
            topics.requests(CATEGORY), encode(request), key=str(request.run_id).encode()
        )
        marks: dict[str, datetime] = {}
        annotate_end: datetime | None = None
        result: dict[str, Any] | None = None
        seconds = 0.0
        logs: list[str] = []
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while result is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the to_task run did not end within {RUN_TIMEOUT_S} s")
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = decode_event(record.value or b"")
                    if event.run_id != request.run_id:
                        continue
                    if isinstance(event, RunStarted):
                        marks["dispatch"] = event.ts
                    elif isinstance(event, RunLog):
                        logs.append(f"{event.payload.level}: {event.payload.message}")
                        if event.payload.code in LOG_PHASES:
                            marks[LOG_PHASES[event.payload.code]] = event.ts
                    elif (
                        isinstance(event, RunMetric)
                        and event.payload.category == "annotation"
                        and event.payload.values.get("success", 0) == 0
                    ):
                        annotate_end = event.ts  # annotate's metrics; save's count successes
                    elif isinstance(event, RunSucceeded):
                        seconds = time.perf_counter() - began
                        marks["finish"] = event.ts
                        result = dict(event.payload.result)
                    elif isinstance(event, RunFailed | RunCancelled):
                        raise RuntimeError(
                            f"the to_task run ended {event.type}: {event.payload}; its last "
                            f"logs: {logs[-10:]}"
                        )
        if annotate_end is not None:
            marks["annotate"] = annotate_end
        order = ["dispatch", "job_start", "validate_extract", "preprocess", "annotate", "save"]
        phases: dict[str, float] = {}
        previous = submitted
        for name in [*order, "finish"]:
            if name in marks:
                phases[name] = round((marks[name] - previous).total_seconds(), 2)
                previous = marks[name]
        return Measured(seconds, result, phases)
    finally:
        await producer.stop()
        await consumer.stop()
        worker.request_stop()
        async with asyncio.timeout(60):
            await worker_task


def check_result(result: dict[str, Any], count: int) -> None:
    """Every unit got a task, every task was annotated, nothing skipped or failed."""
    got = (result.get("tasks_created"), result.get("annotated"), result.get("skipped"))
    if got != (count, count, 0) or result.get("failed"):
        failed = result.get("failed") or []
        raise RuntimeError(
            f"the to_task run did not annotate all {count} units: tasks_created, annotated, "
            f"skipped = {got}, {len(failed)} failed (first: {failed[:3]})"
        )


# -- the baseline: a plain asyncpg + aiobotocore script ------------------------------------------


async def baseline_seconds(settings: Settings, seeded: Seeded) -> float:
    """List the units, read and convert each COCO file, insert the tasks in batches."""
    assert settings.database_url is not None
    known = set(CLASSES)
    began = time.perf_counter()
    conn = await asyncpg.connect(settings.database_url)
    try:
        units = await conn.fetch(
            "SELECT id, files::text FROM catalog.data_units"
            " WHERE tenant = $1 AND data_collection_id = $2 ORDER BY id",
            TENANT,
            seeded.collection,
        )
        limit = asyncio.Semaphore(CONCURRENCY)

        async with s3_client(settings) as client:

            async def convert(unit_id: int, files_json: str) -> tuple[str, uuid.UUID, int, str]:
                files = orjson.loads(files_json)
                bucket, _, key = files["label"]["uri"].removeprefix("s3://").partition("/")
                async with limit:
                    response = await client.get_object(Bucket=bucket, Key=key)
                    async with response["Body"] as body:
                        data = await body.read()
                image = parse_coco_file(data, key.rpartition("/")[2])
                if any(box.class_name not in known for box in image.annotations):
                    raise RuntimeError(f"{key}: a class outside the label schema")
                image_name = files["image"]["uri"].rpartition("/")[2]
                image = image.model_copy(update={"file_name": image_name})
                document = DMData(images=[image]).model_dump_json()
                return (TENANT, seeded.baseline_project, unit_id, document)

            rows = await asyncio.gather(*(convert(unit["id"], unit["files"]) for unit in units))
        for start in range(0, len(rows), INSERT_BATCH):
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO catalog.tasks (tenant, project_id, data_unit_id, data, status)"
                    " VALUES ($1, $2, $3, $4::jsonb, 'pending')",
                    rows[start : start + INSERT_BATCH],
                )
    finally:
        await conn.close()
    return time.perf_counter() - began


async def check_tasks(settings: Settings, seeded: Seeded, count: int) -> None:
    """Both projects hold a task of every unit, with the same document of BOXES boxes each."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE m.data IS NOT NULL) AS mesh,
                   count(b.id) FILTER (WHERE b.data IS NOT NULL) AS baseline,
                   count(*) FILTER (WHERE m.data = b.data) AS same,
                   sum(jsonb_array_length(m.data -> 'images' -> 0 -> 'annotations')) AS boxes
            FROM catalog.tasks AS m
            LEFT JOIN catalog.tasks AS b
              ON b.data_unit_id = m.data_unit_id AND b.project_id = $2
            WHERE m.project_id = $1
            """,
            seeded.mesh_project,
            seeded.baseline_project,
        )
    finally:
        await conn.close()
    assert row is not None
    found = (row["mesh"], row["baseline"], row["same"], row["boxes"])
    if found != (count, count, count, count * BOXES):
        raise RuntimeError(
            f"tasks with data (mesh, baseline), identical documents, mesh boxes: {found}; "
            f"expected {(count, count, count, count * BOXES)}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=UNITS, help="data units to pre-annotate")
    count: int = parser.parse_args().units
    if count < 1:
        parser.error("--units must be at least 1")
    async with Sandbox(Settings()) as sandbox:
        settings = sandbox.settings.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}"})
        began = time.perf_counter()
        seeded = await seed(settings, count)
        log(
            f"seeded {count} data units (a PNG and a COCO file of {BOXES} boxes each) in "
            f"{time.perf_counter() - began:.1f}s"
        )
        mesh = await mesh_run(settings, seeded)
        check_result(mesh.result, count)
        log(
            f"to_task action: {mesh.seconds:.2f}s, {count / mesh.seconds:.1f} tasks/s, "
            f"phases {mesh.phases}"
        )
        base_s = await baseline_seconds(settings, seeded)
        log(f"baseline (asyncpg + aiobotocore): {base_s:.2f}s, {count / base_s:.1f} tasks/s")
        await check_tasks(settings, seeded, count)
        log("both projects hold identical documents for every unit")
    value = count / mesh.seconds
    baseline = count / base_s
    log(f"ratio {value / baseline:.3f} (aim >= 0.8)")
    print(
        json.dumps(
            {
                "bench": "to_task_throughput",
                "value": round(value, 1),
                "unit": "tasks/s",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "units": count,
                "mesh_s": round(mesh.seconds, 3),
                "baseline_s": round(base_s, 3),
                "boxes_per_unit": BOXES,
                "concurrency": CONCURRENCY,
                "phases_s": mesh.phases,
                "baseline_desc": "asyncpg lists the units, aiobotocore reads each COCO file "
                f"({CONCURRENCY} at a time), parse_coco_file -> DM JSON, executemany INSERT "
                f"of the tasks in batches of {INSERT_BATCH}",
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
