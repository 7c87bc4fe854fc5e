"""Export throughput: 20,000 tasks with 10 boxes each exported as COCO, then as YOLO.

Value: the built-in export action (a `job` on an in-process export worker; target `task`, a
`file://` destination storage in a temporary directory, `save_original_file=false` so that no
image is copied) run twice over the same seeded project, once with `output_format=coco` and
once with `yolo`: items/s = 2 x items / (the two runs' seconds from `run.started` to
`run.succeeded`). A run's time thus includes spawning its job process, streaming the tasks
from PostgreSQL, the DM validation and hooks, writing the format into staging and storing it
in the destination. Also printed: each format's items/s, and the peak RSS of the two runs'
job processes (aim: < 500 MB: items are streamed, never held all at once).

Baseline, in the same run from the same data: supervision 0.31 (`sv.DetectionDataset`) doing
the same conversion, in a fresh spawned process (bench/support/supervision_baseline.py). Its
data preparation, not timed, builds the dataset from the seeded DM documents in memory: the
classes of the label schema, one `sv.Detections` per image (xyxy = DM's x, y, x + w,
y + h; class_id = the class's id) and, for the image sizes supervision takes from the images,
one shared blank array per size
(`images={path: array}`, supervision's in-memory mode, deprecated in 0.30 but still there).
Timed: `as_coco(annotations_path=...)` (one `annotations.json`) plus
`as_yolo(annotations_directory_path=..., data_yaml_path=...)` (one label file per image and
`data.yaml`); no image is read, decoded or written, so what is timed is the conversion and
the writing of the annotation files, nothing else (our side does strictly more: PostgreSQL,
job spawn, validation, staging, copying into the storage, which fsyncs every file; and its
YOLO numbers are written in full `repr`, supervision's with 5 decimals). Ratio = value /
baseline (aim: >= 1.0). `phases_s` splits each export run at its log codes: setup, convert,
store, finish. The same conversion over supervision's recommended mode, a list of image
paths (small real PNG files of each item's size on disk, one per item: COCO reads each
file's header, YOLO decodes each image for its shape), is printed as `baseline_files`
(items/s) with its ratio; these are the files the data units point at.
`baseline_peak_rss_mb` is the supervision process's peak, dataset included (supervision
holds the whole dataset in memory).

`--items N` changes the number of tasks (default 20,000).

`--published` (bench `export_throughput_published`): the value is the same export run by a
tenant's published version of the built-in plugin: its directory archived under the code
`bench-export`, stored in the platform bucket and announced on `runmesh.plugins` as
`POST /v1/plugins` does (bench/support/published.py), and requested as
`bench-export@1.0.0` for the bench's tenant. Its job is confined: a per-run PostgreSQL role
under row-level security, and the destination storage reached through the worker's broker
(every byte over the job's pipe). Its first run installs the version (virtualenv, fork
server): that is one untimed warm-up export of a project of its own (WARM_ITEMS tasks),
printed as `first_run_s`. The built-in export is also run, on the same worker and the same
project: `builtin_value` and `published_over_builtin` (what the confinement costs). In this
mode both sides are timed from the request's produce to `run.succeeded` (`phases_s`'s setup
too): a published job announces `run.started` itself, after its role is made, its job
forked and confined and its plugin imported, all of which is the confinement's cost. The
baseline and the checks of every export's files are as above.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from PIL import Image
from pydantic import TypeAdapter
from support.job_memory import sample_job_rss  # bench/support, on the script's path
from support.published import publish_copy
from support.runs import BenchWorker
from support.supervision_baseline import Entry, spawned_export

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import (
    DataCollectionCreate,
    LabelSchema,
    ProjectCreate,
    StorageCreate,
)
from runmesh.catalog.repository import NewDataUnit
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.dm import parse_dm
from runmesh.export import BUILTIN_PLUGIN
from runmesh.sandbox import Sandbox

ITEMS = 20_000
BOXES = 10
CLASSES = ["person", "car", "bicycle", "dog", "cat"]
# Small images: the sizes are what the formats need, and small files keep supervision's
# image reading (in its file mode) as cheap as it can be.
SIZES = [(96, 64), (64, 64), (48, 80)]
SEED_BATCH = 2_000
FORMATS = ("coco", "yolo")
RSS_AIM_MB = 500
TENANT = "bench"
PUBLISHED_CODE = "bench-export"  # the tenant's published copy of the built-in plugin
PUBLISHED_BENCH = "export_throughput_published"
WARM_ITEMS = 20  # tasks of the published version's untimed first run
# Log codes the export emits between its phases, and the phase each one ends; the last
# phase, "finish" (the artifact, the result, the job's exit), ends at run.succeeded.
PHASES = {
    "CONVERSION_STARTED": "setup",  # job spawn, migrations, counting, output folder
    "CONVERSION_COMPLETED": "convert",  # stream from PostgreSQL, hooks, write into staging
    "FILES_SAVED": "store",  # close the writers, copy staging into the destination
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(slots=True, frozen=True)
class Item:
    """One task's image: its PNG on disk, its size and its DM document."""

    path: Path
    width: int
    height: int
    dm: str  # DM JSON, as `set_task_data` stores it


@dataclass(slots=True, frozen=True)
class Measured:
    """One export run: its seconds, its result, its job's peak RSS and its phases' seconds."""

    seconds: float
    result: dict[str, Any]
    peak_rss_mb: float
    phases: dict[str, float]


def make_items(root: Path, count: int) -> list[Item]:
    """Deterministic DM documents of BOXES boxes each, and one PNG per item of its size."""
    rng = random.Random(7)
    pngs: dict[tuple[int, int], bytes] = {}
    for size in SIZES:
        out = io.BytesIO()
        Image.new("RGB", size, (90, 120, 150)).save(out, format="PNG")
        pngs[size] = out.getvalue()
    images = root / "images"
    images.mkdir(parents=True)
    items: list[Item] = []
    for index in range(count):
        width, height = SIZES[index % len(SIZES)]
        boxes = []
        for k in range(BOXES):
            # Two decimals, as annotation tools store them; a margin of one pixel keeps
            # x + w inside the image after float rounding (no YOLO clipping, on either side).
            w = math.floor(rng.uniform(2, width / 3) * 100) / 100
            h = math.floor(rng.uniform(2, height / 3) * 100) / 100
            x = math.floor(rng.uniform(0, width - w - 1) * 100) / 100
            y = math.floor(rng.uniform(0, height - h - 1) * 100) / 100
            boxes.append(
                {
                    "id": f"b{k}",
                    "type": "bounding_box",
                    "class_name": rng.choice(CLASSES),
                    "bbox": [x, y, w, h],
                }
            )
        path = images / f"img{index:06d}.png"
        path.write_bytes(pngs[(width, height)])
        document = {
            "images": [
                {"file_name": path.name, "width": width, "height": height, "annotations": boxes}
            ]
        }
        items.append(Item(path, width, height, parse_dm(document).model_dump_json()))
    return items


async def seed(settings: Settings, items: list[Item], destination: Path) -> tuple[str, str]:
    """A project with one completed task per item, in batches; (project id, storage id)."""
    pool = await create_pool(settings.database, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "catalog", load_migrations("runmesh.catalog"))
        async with pool.acquire() as conn:
            storage = await repository.create_storage(
                conn,
                TENANT,
                TypeAdapter(StorageCreate).validate_python(
                    {
                        "name": f"dst-{uuid.uuid4().hex[:6]}",
                        "provider": "file",
                        "config": {"root": str(destination)},
                    }
                ),
            )
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
                            }
                        ],
                    }
                ),
            )
            project = await annotation.create_project(
                conn,
                TENANT,
                ProjectCreate(
                    name=f"proj-{uuid.uuid4().hex[:6]}",
                    data_collection_id=collection.id,
                    annotation_type="image_detection",
                    label_schema=LabelSchema.model_validate(
                        {"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]}
                    ),
                ),
            )
            for start in range(0, len(items), SEED_BATCH):
                batch = items[start : start + SEED_BATCH]
                units = [
                    NewDataUnit(
                        unit_key=item.path.stem,
                        files={
                            "image": {
                                "uri": item.path.as_uri(),
                                "size": item.path.stat().st_size,
                                "checksum": None,
                                "media_type": "image/png",
                            }
                        },
                    )
                    for item in batch
                ]
                unit_ids = await repository.upsert_data_units(
                    conn, TENANT, collection.id, None, units
                )
                created = await annotation.create_tasks(conn, TENANT, project.id, unit_ids)
                # One statement per batch; the documents are valid DM of the schema's classes,
                # which is all that `set_task_data` checks one task at a time.
                await conn.execute(
                    """
                    UPDATE catalog.tasks AS t
                    SET data = u.data::jsonb, status = 'completed', updated_at = now()
                    FROM unnest($1::bigint[], $2::text[]) AS u(id, data)
                    WHERE t.id = u.id AND t.tenant = $3
                    """,
                    list(created.task_ids),
                    [item.dm for item in batch],
                    TENANT,
                )
    finally:
        await pool.close()
    return str(project.id), str(storage.id)


async def baseline_run(items: list[Item], out: Path, *, in_memory: bool) -> dict[str, float]:
    """supervision's conversion of the items, in a spawned process of its own."""
    entries: list[Entry] = []
    class_ids = {name: index for index, name in enumerate(CLASSES)}
    for item in items:
        image = orjson.loads(item.dm)["images"][0]
        xyxy: list[list[float]] = []
        ids: list[int] = []
        for box in image["annotations"]:
            x, y, w, h = box["bbox"]
            xyxy.append([x, y, x + w, y + h])
            ids.append(class_ids[box["class_name"]])
        entries.append((str(item.path), item.width, item.height, xyxy, ids))
    result = await spawned_export(entries, out, in_memory=in_memory, classes=CLASSES, sizes=SIZES)
    expected = len(items) * BOXES
    if result["annotations"] != expected or result["label_files"] != len(items):
        raise RuntimeError(f"supervision wrote an incomplete dataset: {result}")
    return result


def export_request(
    project: str, storage: str, output_format: str, plugin: str | None
) -> RunRequest:
    """The export of the project's tasks in one format, by `plugin` (None: the built-in)."""
    return RunRequest(
        category="export",
        action="export",
        tenant=TENANT,
        plugin=plugin,
        params={
            "name": f"export-{output_format}",
            "storage": storage,
            "target": "task",
            "filter": {"project": project},
            "path": "exports",
            "save_original_file": False,
            "extra_params": {"output_format": output_format},
        },
    )


async def export_runs(
    worker: BenchWorker, project: str, storage: str, plugin: str | None, *, from_request: bool
) -> dict[str, Measured]:
    """The export action in each format, timed from `run.started` or from the request."""
    side = "built-in" if plugin is None else plugin
    runs: dict[str, Measured] = {}
    for output_format in FORMATS:
        peaks: list[float] = []
        sampler = asyncio.create_task(sample_job_rss(peaks))
        try:
            ended = await worker.run(
                export_request(project, storage, output_format, plugin),
                label=f"the {output_format} export ({side})",
                timeout_s=900,
                codes=PHASES,
            )
        finally:
            sampler.cancel()
        seconds = ended.seconds(from_request=from_request)
        phases: dict[str, float] = {}
        if all(code in ended.marks for code in PHASES):
            began = ended.began(from_request=from_request)
            bounds = [began, *(ended.marks[code] for code in PHASES), ended.ended]
            names = [*PHASES.values(), "finish"]
            for name, (begin, end) in zip(names, itertools.pairwise(bounds), strict=True):
                phases[name] = round((end - begin).total_seconds(), 2)
        runs[output_format] = Measured(seconds, ended.result, max(peaks, default=0.0), phases)
        items = ended.result.get("items")
        log(f"export ({side}), {output_format}: {seconds:.1f}s ({phases}), items {items}")
    return runs


def check_export(destination: Path, result: dict[str, Any], output_format: str, count: int) -> None:
    """The export holds every item and box, and nothing was reported lost."""
    items = result["items"]
    if items["exported"] != count or items["failed"] or result["conversion_issues"]:
        raise RuntimeError(f"the {output_format} export is incomplete: {result}")
    folder = destination / result["path"]
    if output_format == "coco":
        document = orjson.loads((folder / "annotations.json").read_bytes())
        found = (len(document["images"]), len(document["annotations"]))
        if found != (count, count * BOXES):
            raise RuntimeError(f"{folder}: {found} images and annotations, not {count}")
    elif len(os.listdir(folder / "labels")) != count:
        raise RuntimeError(f"{folder / 'labels'}: not {count} label files")


def per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


@dataclass(slots=True, frozen=True)
class Sides:
    """The export runs: the built-in's, and with --published the published version's and
    its first (installing, untimed) run's seconds."""

    builtin: dict[str, Measured]
    published: dict[str, Measured] | None = None
    first_run_s: float | None = None


async def measure(
    settings: Settings, items: list[Item], destination: Path, work: Path | None
) -> Sides:
    """Seed the project, then export it with the built-in plugin and, with --published
    (`work` set), with the tenant's published copy of it, on one in-process worker."""
    began = time.perf_counter()
    project, storage = await seed(settings, items, destination)
    log(f"seeded {len(items)} tasks in {time.perf_counter() - began:.1f}s")
    async with BenchWorker(settings, "export", BUILTIN_PLUGIN, service="export") as worker:
        builtin = await export_runs(worker, project, storage, None, from_request=bool(work))
        if work is None:
            return Sides(builtin)
        ref = await publish_copy(settings, BUILTIN_PLUGIN, work, code=PUBLISHED_CODE, tenant=TENANT)
        # Untimed: the first run installs the version (archive, virtualenv) and starts its
        # fork server; a project of its own keeps it short.
        warm_items = items[:WARM_ITEMS]
        warm_project, warm_storage = await seed(settings, warm_items, destination)
        warm = await worker.run(
            export_request(warm_project, warm_storage, "coco", ref),
            label=f"the warm-up export ({ref})",
            timeout_s=900,
        )
        check_export(destination, warm.result, "coco", len(warm_items))
        first_run_s = warm.seconds(from_request=True)
        log(f"{ref}: first run (installs it) {first_run_s:.1f}s")
        runs = await export_runs(worker, project, storage, ref, from_request=True)
        return Sides(builtin, runs, first_run_s)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=ITEMS, help="tasks to export")
    parser.add_argument("--published", action="store_true", help="as a published version too")
    args = parser.parse_args()
    count: int = args.items
    with (
        tempfile.TemporaryDirectory(prefix="export-bench-") as directory,
        tempfile.TemporaryDirectory(prefix="export-bench-plugins-") as plugins,
    ):
        root = Path(directory)
        items = await asyncio.to_thread(make_items, root / "data", count)
        log(f"{count} items, {count * BOXES} boxes")
        base = await baseline_run(items, root / "sv-memory", in_memory=True)
        log(
            f"baseline (supervision, in memory): coco {base['coco_s']:.1f}s, "
            f"yolo {base['yolo_s']:.1f}s, peak RSS {base['peak_rss_mb']:.0f} MB"
        )
        files = await baseline_run(items, root / "sv-files", in_memory=False)
        log(
            f"baseline (supervision, image files): coco {files['coco_s']:.1f}s, "
            f"yolo {files['yolo_s']:.1f}s"
        )
        destination = root / "destination"
        destination.mkdir()
        async with Sandbox(Settings()) as sandbox:
            settings = sandbox.settings.model_copy(
                # The operator's storage policy: the destination storage lives under `root`.
                # Published versions are installed in a cache of this run's, outside it.
                update={
                    "topic_prefix": f"b{uuid.uuid4().hex[:8]}",
                    "storage_file_roots": [root],
                    "plugin_cache_dir": Path(plugins) / "cache",
                }
            )
            work = Path(plugins) / "published" if args.published else None
            sides = await measure(settings, items, destination, work)
        for side in (sides.builtin, sides.published or {}):
            for output_format, run in side.items():
                check_export(destination, run.result, output_format, count)
    print(json.dumps(report(count, sides, base, files)))


def report(
    count: int, sides: Sides, base: dict[str, float], files: dict[str, float]
) -> dict[str, Any]:
    """The last line's JSON: the published version's numbers with --published."""
    runs = sides.published or sides.builtin
    run_s = sum(run.seconds for run in runs.values())
    base_s = base["coco_s"] + base["yolo_s"]
    files_s = files["coco_s"] + files["yolo_s"]
    value = 2 * count / run_s
    baseline = 2 * count / base_s
    peak_job_mb = max(run.peak_rss_mb for run in runs.values())
    out: dict[str, Any] = {
        "bench": "export_throughput" if sides.published is None else PUBLISHED_BENCH,
        "value": round(value, 1),
        "unit": "items/s",
        "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 3),
        "coco_items_per_s": per_s(count, runs["coco"].seconds),
        "yolo_items_per_s": per_s(count, runs["yolo"].seconds),
        "baseline_coco_items_per_s": per_s(count, base["coco_s"]),
        "baseline_yolo_items_per_s": per_s(count, base["yolo_s"]),
        "baseline_files": per_s(2 * count, files_s),
        "baseline_files_coco_items_per_s": per_s(count, files["coco_s"]),
        "baseline_files_yolo_items_per_s": per_s(count, files["yolo_s"]),
        "ratio_to_baseline_files": round(value / (2 * count / files_s), 3),
        "items": count,
        "boxes_per_item": BOXES,
        "job_peak_rss_mb": round(peak_job_mb, 1),
        "job_peak_rss_mb_by_format": {k: round(v.peak_rss_mb, 1) for k, v in runs.items()},
        "phases_s": {k: v.phases for k, v in runs.items()},
        "rss_ok": peak_job_mb < RSS_AIM_MB,
        "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
        "baseline_desc": "supervision 0.31 DetectionDataset.as_coco + as_yolo of the "
        "same boxes, images in memory (no image I/O), annotation files only",
    }
    if sides.published is not None:
        builtin_value = 2 * count / sum(run.seconds for run in sides.builtin.values())
        out.update(
            builtin_value=round(builtin_value, 1),
            published_over_builtin=round(value / builtin_value, 3),
            builtin_phases_s={k: v.phases for k, v in sides.builtin.items()},
            builtin_job_peak_rss_mb=round(max(r.peak_rss_mb for r in sides.builtin.values()), 1),
            first_run_s=round(sides.first_run_s or 0.0, 2),
            timed_from="request produced",
        )
    return out


if __name__ == "__main__":
    asyncio.run(main())
