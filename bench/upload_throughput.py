"""Upload throughput: 2,000 files (4 KB to 4 MB, about 1 GB) from a file storage into S3.

Value: the built-in upload action (a `job` on an in-process upload worker) copying the tree
from a `file://` storage to the sandbox's moto bucket and registering 1,000 data units (image
+ label per unit), timed from its `run.started` to its `run.succeeded` event: MB/s.
Baseline, in the same run against the same moto: a plain aiobotocore script that puts the
same files with the same concurrency (`put_object` of each file's bytes, nothing else).
Ratio = value / baseline (aim: >= 0.8). Also printed: files/s, and the peak RSS of the job
process that did the upload (aim: < 300 MB: files are streamed, never held whole).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer
from support.job_memory import sample_job_rss  # bench/support, on the script's path

from runmesh.common.catalog import repository
from runmesh.common.catalog.models import STORAGE_CREATE, DataCollectionCreate
from runmesh.common.db import apply_migrations, create_pool, load_migrations
from runmesh.common.events import RunRequest, decode_event, encode
from runmesh.common.kafka import consumer_config, ensure_topics, make_producer, pin_to_latest
from runmesh.common.sandbox import Sandbox
from runmesh.common.settings import Settings
from runmesh.common.topics import Topics
from runmesh.common.worker import Worker
from runmesh.common.worker.service import build_registry
from runmesh.upload import BUILTIN_PLUGIN

UNITS = 1000  # two files each: 2,000 files
CONCURRENCY = 8
TENANT = "bench"
JOB_PEAKS: list[float] = []


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_tree(root: Path) -> tuple[int, list[Path]]:
    """Deterministic files, sizes log-uniform in 4 KB..4 MB; (total bytes, paths)."""
    rng = random.Random(7)
    block = rng.randbytes(1 << 20)
    paths: list[Path] = []
    total = 0
    for index in range(UNITS):
        for spec, extension in (("image", ".jpg"), ("label", ".json")):
            size = int(math.exp(rng.uniform(math.log(4 << 10), math.log(4 << 20))))
            path = root / "ds" / spec / f"u{index:04}{extension}"
            path.parent.mkdir(parents=True, exist_ok=True)
            offset = rng.randrange(0, 1 << 19)
            data = (block[offset:] + block) * (size // len(block) + 1)
            path.write_bytes(data[:size])
            paths.append(path)
            total += size
    return total, paths


def s3_client(settings: Settings) -> Any:
    extra: dict[str, Any] = {"region_name": settings.s3_region}
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        extra["aws_access_key_id"] = settings.s3_access_key_id
        extra["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return get_session().create_client("s3", endpoint_url=settings.s3_endpoint_url, **extra)


async def baseline_seconds(settings: Settings, root: Path, paths: list[Path]) -> float:
    """A plain script: put every file, CONCURRENCY at a time."""
    limit = asyncio.Semaphore(CONCURRENCY)
    prefix = f"baseline-{uuid.uuid4().hex[:8]}"
    async with s3_client(settings) as s3:

        async def put(path: Path) -> None:
            async with limit:
                body = await asyncio.to_thread(path.read_bytes)
                key = f"{prefix}/{path.relative_to(root)}"
                await s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)

        began = time.perf_counter()
        await asyncio.gather(*(put(path) for path in paths))
        return time.perf_counter() - began


async def upload_seconds(settings: Settings, root: Path) -> tuple[float, dict[str, Any]]:
    """The upload action over the same tree: seconds from run.started to run.succeeded."""
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.common.catalog"))
        async with pool.acquire() as conn:
            storage = await repository.create_storage(
                conn,
                TENANT,
                STORAGE_CREATE.validate_python(
                    {
                        "name": f"b{uuid.uuid4().hex[:6]}",
                        "provider": "file",
                        "config": {"root": str(root)},
                    }
                ),
            )
            collection = await repository.create_collection(
                conn,
                TENANT,
                DataCollectionCreate.model_validate(
                    {
                        "name": f"b{uuid.uuid4().hex[:6]}",
                        "file_specifications": [
                            {"name": "image", "extensions": [".jpg"], "is_primary": True},
                            {"name": "label", "extensions": [".json"]},
                        ],
                    }
                ),
            )
    finally:
        await pool.close()
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings, [topics.requests("upload"), topics.events, topics.control])
    worker = Worker(
        "upload", build_registry(settings, [BUILTIN_PLUGIN]), settings, service="upload"
    )
    worker_task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 60)
    consumer = AIOKafkaConsumer(topics.events, **consumer_config(settings, group_id=None))
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        await pin_to_latest(consumer, timeout_s=30)
        request = RunRequest(
            category="upload",
            action="upload",
            tenant=TENANT,
            params={
                "name": "bench",
                "storage": str(storage.id),
                "data_collection": str(collection.id),
                "path": "ds",
                "max_concurrency": CONCURRENCY,
                "creating_data_unit_batch_size": 500,
            },
        )
        await producer.send_and_wait(
            topics.requests("upload"), encode(request), key=str(request.run_id).encode()
        )
        started = ended = None
        result: dict[str, Any] = {}
        sampler = asyncio.create_task(sample_job_rss(JOB_PEAKS))
        deadline = time.monotonic() + 600
        while ended is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the upload did not end within 600 s")
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = decode_event(record.value or b"")
                    if event.run_id != request.run_id:
                        continue
                    if event.type == "run.started":
                        started = event.ts
                    elif event.type == "run.succeeded":
                        ended = event.ts
                        result = event.payload.result
                    elif event.type in ("run.failed", "run.cancelled"):
                        raise RuntimeError(f"the upload ended {event.type}: {event.payload}")
        sampler.cancel()
        assert started is not None
        return (ended - started).total_seconds(), result
    finally:
        await producer.stop()
        await consumer.stop()
        worker.request_stop()
        await asyncio.wait_for(worker_task, 60)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as directory:
        root = Path(directory)
        total, paths = await asyncio.to_thread(make_tree, root)
        mb = total / 1e6
        log(f"{len(paths)} files, {mb:.0f} MB")
        async with Sandbox(Settings()) as sandbox:
            settings = sandbox.settings.model_copy(
                # The operator's storage policy: the source storage lives under `root`.
                update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}", "storage_file_roots": [root]}
            )
            base_s = await baseline_seconds(settings, root, paths)
            log(f"baseline: {base_s:.1f}s, {mb / base_s:.1f} MB/s")
            run_s, result = await upload_seconds(settings, root)
            log(f"upload action: {run_s:.1f}s, {mb / run_s:.1f} MB/s; {result.get('data_units')}")
    peak_job_mb = max(JOB_PEAKS, default=0.0)
    value = mb / run_s
    baseline = mb / base_s
    print(
        json.dumps(
            {
                "bench": "upload_throughput",
                "value": round(value, 2),
                "unit": "MB/s",
                "baseline": round(baseline, 2),
                "ratio": round(value / baseline, 3),
                "files_per_s": round(len(paths) / run_s, 1),
                "baseline_files_per_s": round(len(paths) / base_s, 1),
                "files": len(paths),
                "megabytes": round(mb, 1),
                "job_peak_rss_mb": round(peak_job_mb, 1),
                "baseline_desc": "plain aiobotocore put_object of the same files, same concurrency",
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
