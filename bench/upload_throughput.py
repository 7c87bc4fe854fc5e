"""Upload throughput: 2,000 files (4 KB to 4 MB, about 1 GB) from a file storage into S3.

Value: the built-in upload action (a `job` on an in-process upload worker) copying the tree
from a `file://` storage to the sandbox's moto bucket and registering 1,000 data units (image
+ label per unit), timed from its `run.started` to its `run.succeeded` event: MB/s.
Baseline, in the same run against the same moto: a plain aiobotocore script that puts the
same files with the same concurrency (`put_object` of each file's bytes, nothing else).
Ratio = value / baseline (aim: >= 0.8). Also printed: files/s, and the peak RSS of the job
process that did the upload (aim: < 300 MB: files are streamed, never held whole). Each
upload is checked: every file stored whole under the run's prefix, every unit registered.

`--units N` changes the number of data units (default 1,000; two files each).

`--published` (bench `upload_throughput_published`): the value is the same upload run by a
tenant's published version of the built-in plugin: its directory archived under the code
`bench-upload`, stored in the platform bucket and announced on `runmesh.plugins` as
`POST /v1/plugins` does (bench/support/published.py), and requested as
`bench-upload@1.0.0` for the bench's tenant. Its job is confined: a per-run PostgreSQL role
under row-level security, and both the source storage and the platform bucket reached
through the worker's broker (every byte over the job's pipe). Its first run installs the
version (virtualenv, fork server): that is one untimed warm-up upload of a small tree of its
own (WARM_UNITS units), printed as `first_run_s`. The built-in upload is also run, on the
same worker from the same tree (each run into a new collection): `builtin_value` and
`published_over_builtin` (what the confinement costs). In this mode both sides are timed
from the request's produce to `run.succeeded`: a published job announces `run.started`
itself, after its role is made, its job forked and confined and its plugin imported, all of
which is the confinement's cost. The baseline is as above.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from support.job_memory import sample_job_rss  # bench/support, on the script's path
from support.published import publish_copy
from support.runs import BenchWorker

from runmesh.catalog import repository
from runmesh.catalog.models import STORAGE_CREATE, DataCollectionCreate
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.sandbox import Sandbox
from runmesh.storage import platform_storage
from runmesh.upload import BUILTIN_PLUGIN

UNITS = 1000  # two files each: 2,000 files
CONCURRENCY = 8
TENANT = "bench"
PUBLISHED_CODE = "bench-upload"  # the tenant's published copy of the built-in plugin
PUBLISHED_BENCH = "upload_throughput_published"
WARM_UNITS = 5  # units of the published version's untimed first run


@dataclass(slots=True, frozen=True)
class Measured:
    """One upload run: its seconds, its result and its job's peak RSS."""

    seconds: float
    result: dict[str, Any]
    peak_rss_mb: float


@dataclass(slots=True, frozen=True)
class Sides:
    """The built-in's upload, and with --published the published version's and its first
    (installing, untimed) run's seconds."""

    builtin: Measured
    published: Measured | None = None
    first_run_s: float | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_tree(root: Path, units: int) -> tuple[int, list[Path]]:
    """Deterministic files under `root/ds`, sizes log-uniform in 4 KB..4 MB; (total bytes,
    paths)."""
    rng = random.Random(7)
    block = rng.randbytes(1 << 20)
    paths: list[Path] = []
    total = 0
    for index in range(units):
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


def tree_sizes(root: Path) -> dict[str, int]:
    """The tree's files by their path under `root/ds` (as stored under a run's prefix)."""
    tree = root / "ds"
    return {p.relative_to(tree).as_posix(): p.stat().st_size for p in tree.rglob("*.*")}


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


async def catalog_rows(settings: Settings, root: Path) -> tuple[str, str]:
    """A `file` storage over `root` and a new data collection: (storage id, collection id)."""
    pool = await create_pool(settings.database, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
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
    return str(storage.id), str(collection.id)


async def upload_run(
    worker: BenchWorker,
    root: Path,
    sizes: dict[str, int],
    plugin: str | None,
    *,
    from_request: bool,
) -> Measured:
    """The upload action (`plugin`; None: the built-in) of the tree under `root` into a new
    collection, timed from `run.started` or from the request, and checked."""
    storage, collection = await catalog_rows(worker.settings, root)
    request = RunRequest(
        category="upload",
        action="upload",
        tenant=TENANT,
        plugin=plugin,
        params={
            "name": "bench",
            "storage": storage,
            "data_collection": collection,
            "path": "ds",
            "max_concurrency": CONCURRENCY,
            "creating_data_unit_batch_size": 500,
        },
    )
    peaks: list[float] = []
    sampler = asyncio.create_task(sample_job_rss(peaks))
    try:
        label = f"the upload ({plugin or 'built-in'})"
        ended = await worker.run(request, label=label, timeout_s=600)
    finally:
        sampler.cancel()
    await check_upload(worker.settings, ended.result, sizes)
    return Measured(ended.seconds(from_request=from_request), ended.result, max(peaks, default=0))


async def check_upload(settings: Settings, result: dict[str, Any], sizes: dict[str, int]) -> None:
    """Every file was stored whole under the run's prefix and every unit registered."""
    files, units = result["data_files"], result["data_units"]
    counts = (files["success"], files["failed"], units["success"], units["failed"])
    if counts != (len(sizes), 0, len(sizes) // 2, 0) or files["already_uploaded"]:
        raise RuntimeError(f"the upload is incomplete: {result}")
    prefix = result["destination"]
    async with platform_storage(settings.s3) as bucket:
        stored = {
            info.path.removeprefix(f"{prefix}/"): info.size
            async for info in bucket.list(prefix, recursive=True)
        }
    if stored != sizes:
        missing = sorted(set(sizes.items()) - set(stored.items()))[:5]
        raise RuntimeError(f"{prefix}: {len(stored)} objects, not the {len(sizes)}: {missing}")


async def measure(settings: Settings, root: Path, work: Path | None) -> Sides:
    """The built-in upload of the tree and, with --published (`work` set), the tenant's
    published copy of the plugin's, on one in-process worker."""
    sizes = tree_sizes(root)
    async with BenchWorker(settings, "upload", BUILTIN_PLUGIN, service="upload") as worker:
        builtin = await upload_run(worker, root, sizes, None, from_request=bool(work))
        log(f"upload action (built-in): {builtin.seconds:.1f}s; {builtin.result['data_units']}")
        if work is None:
            return Sides(builtin)
        ref = await publish_copy(settings, BUILTIN_PLUGIN, work, code=PUBLISHED_CODE, tenant=TENANT)
        # Untimed: the first run installs the version (archive, virtualenv) and starts its
        # fork server; a small tree of its own keeps it short.
        warm_root = root / "warm-up"
        await asyncio.to_thread(make_tree, warm_root, WARM_UNITS)
        warm = await upload_run(worker, warm_root, tree_sizes(warm_root), ref, from_request=True)
        log(f"{ref}: first run (installs it) {warm.seconds:.1f}s")
        published = await upload_run(worker, root, sizes, ref, from_request=True)
        log(f"upload action ({ref}): {published.seconds:.1f}s; {published.result['data_units']}")
        return Sides(builtin, published, warm.seconds)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=UNITS, help="data units (2 files each)")
    parser.add_argument("--published", action="store_true", help="as a published version too")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="upload-bench-") as directory,
        tempfile.TemporaryDirectory(prefix="upload-bench-plugins-") as plugins,
    ):
        root = Path(directory)
        total, paths = await asyncio.to_thread(make_tree, root, args.units)
        mb = total / 1e6
        log(f"{len(paths)} files, {mb:.0f} MB")
        async with Sandbox(Settings()) as sandbox:
            settings = sandbox.settings.model_copy(
                # The operator's storage policy: the source storage lives under `root`.
                # Published versions are installed in a cache of this run's, outside it.
                update={
                    "topic_prefix": f"b{uuid.uuid4().hex[:8]}",
                    "storage_file_roots": [root],
                    "plugin_cache_dir": Path(plugins) / "cache",
                }
            )
            base_s = await baseline_seconds(settings, root, paths)
            log(f"baseline: {base_s:.1f}s, {mb / base_s:.1f} MB/s")
            work = Path(plugins) / "published" if args.published else None
            sides = await measure(settings, root, work)
    run = sides.published or sides.builtin
    value = mb / run.seconds
    baseline = mb / base_s
    out: dict[str, Any] = {
        "bench": "upload_throughput" if sides.published is None else PUBLISHED_BENCH,
        "value": round(value, 2),
        "unit": "MB/s",
        "baseline": round(baseline, 2),
        "ratio": round(value / baseline, 3),
        "files_per_s": round(len(paths) / run.seconds, 1),
        "baseline_files_per_s": round(len(paths) / base_s, 1),
        "files": len(paths),
        "megabytes": round(mb, 1),
        "job_peak_rss_mb": round(run.peak_rss_mb, 1),
        "baseline_desc": "plain aiobotocore put_object of the same files, same concurrency",
    }
    if sides.published is not None:
        builtin_value = mb / sides.builtin.seconds
        out.update(
            builtin_value=round(builtin_value, 2),
            published_over_builtin=round(value / builtin_value, 3),
            builtin_job_peak_rss_mb=round(sides.builtin.peak_rss_mb, 1),
            first_run_s=round(sides.first_run_s or 0.0, 2),
            timed_from="request produced",
        )
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
