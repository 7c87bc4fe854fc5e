"""The export service end to end: real broker, PostgreSQL and moto S3, files checked by
independent readers (pycocotools, supervision).

The tests that need the export service as it ships share one in-process worker (`exports`:
started once per module, on topics of the module's own). A test that needs other settings,
or that stops or kills workers, starts its own on its own topics (`own_exports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from runmesh.catalog import annotation, ground_truth, repository
from runmesh.catalog.models import (
    DataCollectionCreate,
    GroundTruthDatasetCreate,
    GroundTruthItemIn,
    ProjectCreate,
    StorageCreate,
)
from runmesh.catalog.repository import NewDataUnit
from runmesh.converters import read_coco, read_dm_json, read_pascal_voc, read_yolo
from runmesh.core.events import RunEventBase
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.dm import DMData, DMImage, parse_dm
from runmesh.export import BUILTIN_PLUGIN
from runmesh.storage import platform_storage
from runmesh.worker import Worker

from .conftest import (
    RunClient,
    ServiceProcesses,
    TrackingRunClient,
    service_worker,
    shared_worker_client,
)
from .otlp_receiver import otlp_receiver

with warnings.catch_warnings():  # supervision warns at import that OpenCV is not installed
    warnings.simplefilter("ignore")
    import supervision as sv  # type: ignore[import-untyped]
from pycocotools.coco import COCO  # type: ignore[import-untyped]

CATEGORY = "export"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLASSES = ["cat", "dog", "person"]
BROKEN = 3  # items whose data is not valid DM


@pytest.fixture
def tenant() -> str:
    return f"ex-{uuid.uuid4().hex[:8]}"


def export_worker(
    settings: Settings, tracer_provider: TracerProvider | None = None, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[Worker]:
    """The export service in this process, with its built-in plugin."""
    return service_worker(
        settings,
        CATEGORY,
        BUILTIN_PLUGIN,
        service="export",
        tracer_provider=tracer_provider,
        **overrides,
    )


@pytest.fixture(scope="module")
async def module_export_worker(module_settings: Settings) -> AsyncIterator[Worker]:
    """One export service, with the default configuration, for the module's tests."""
    async with export_worker(module_settings) as worker:
        yield worker


@pytest.fixture(scope="module")
async def module_exports(module_settings: Settings) -> AsyncIterator[TrackingRunClient]:
    """A client on the module worker's topics, shared by the tests that use that worker."""
    client = TrackingRunClient(module_settings, category=CATEGORY)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def exports(
    module_export_worker: Worker, module_exports: TrackingRunClient
) -> AsyncIterator[RunClient]:
    """Submits export requests to the module's export service (default configuration, already
    serving) and collects their events; a test reads only its own runs', by run id. Runs of
    the test that did not end are cancelled at teardown: the next test finds the worker idle."""
    async with shared_worker_client(module_exports) as client:
        yield client


@pytest.fixture
async def own_exports(settings: Settings) -> AsyncIterator[RunClient]:
    """Submits export requests on the test's own topics, for a test that starts (and stops or
    kills) export services of its own: none of them joins the module worker's group."""
    client = RunClient(settings, category=CATEGORY)
    await client.start()
    yield client
    await client.stop()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, format="PNG")
    return out.getvalue()


def dm_of(index: int, file_name: str, width: int, height: int) -> DMData:
    """Mixed shapes: boxes on every image, polygons, keypoints and a label on some."""
    annotations: list[dict[str, Any]] = [
        {
            "id": f"b{k}",
            "type": "bounding_box",
            "class_name": CLASSES[(index + k) % 3],
            "bbox": [1.5 + k, 2.25 + k, 10.0 + k, 7.5],
        }
        for k in range(3)
    ]
    if index % 4 == 0:
        annotations.append(
            {"id": "p", "type": "polygon", "class_name": "cat", "points": [[1, 1], [9, 2], [4, 8]]}
        )
    if index % 5 == 0:
        annotations.append(
            {"id": "k", "type": "keypoints", "class_name": "person", "points": [[3, 4, 2]]}
        )
    if index % 7 == 0:
        annotations.append({"id": "c", "type": "classification", "class_name": "dog"})
    image = {"file_name": file_name, "width": width, "height": height, "annotations": annotations}
    return parse_dm({"images": [image]})


class Seeded:
    """A project with `count` tasks over uploaded images, some broken, and a GT version."""

    def __init__(self) -> None:
        self.project = uuid.UUID(int=0)
        self.task_ids: list[int] = []
        self.expected: dict[int, DMData] = {}  # task id → its DM
        self.broken: list[int] = []
        self.null: list[int] = []
        self.missing_file: list[int] = []
        self.gt_version = uuid.UUID(int=0)
        self.unit_ids: list[int] = []


async def seed(pool: asyncpg.Pool, settings: Settings, tenant: str, count: int) -> Seeded:
    seeded = Seeded()
    prefix = f"{tenant}/images"
    sizes = [(64, 48), (40, 40), (32, 60)]
    images = {size: png(*size) for size in sizes}
    bucket = platform_storage(settings.s3)
    limit = asyncio.Semaphore(16)
    units: list[NewDataUnit] = []
    try:

        async def upload(index: int) -> None:
            width, height = sizes[index % 3]
            path = f"{prefix}/img{index:05d}.png"
            async with limit:
                info = await bucket.write_bytes(path, images[(width, height)])
            units.append(
                NewDataUnit(
                    unit_key=f"img{index:05d}",
                    files={
                        "image": {
                            "uri": bucket.url(path),
                            "size": info.size,
                            "checksum": info.checksum,
                            "media_type": "image/png",
                        }
                    },
                )
            )

        await asyncio.gather(*(upload(i) for i in range(count)))
    finally:
        await bucket.close()
    units.sort(key=lambda unit: unit.unit_key)
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"col-{uuid.uuid4().hex[:6]}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True}
            ],
        }
    )
    async with pool.acquire() as conn:
        col = await repository.create_collection(conn, tenant, collection)
        seeded.unit_ids = await repository.upsert_data_units(conn, tenant, col.id, None, units)
        project = await annotation.create_project(
            conn,
            tenant,
            ProjectCreate(
                name=f"proj-{uuid.uuid4().hex[:6]}",
                data_collection_id=col.id,
                annotation_type="image_detection",
                label_schema={"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]},  # type: ignore[arg-type]
            ),
        )
        seeded.project = project.id
        created = await annotation.create_tasks(conn, tenant, project.id, seeded.unit_ids)
        seeded.task_ids = list(created.task_ids)
        for index, task_id in enumerate(seeded.task_ids):
            width, height = sizes[index % 3]
            data = dm_of(index, f"img{index:05d}.png", width, height)
            await annotation.set_task_data(conn, tenant, task_id, data, status="completed")
            seeded.expected[task_id] = data
        # Broken items, written past the API's validation as a bad import would.
        for task_id in seeded.task_ids[1 : 1 + BROKEN]:
            await conn.execute(
                "UPDATE catalog.tasks SET data = $1::jsonb WHERE id = $2",
                '{"images": [{"file_name": 7, "width": -1}]}',
                task_id,
            )
            seeded.broken.append(task_id)
        seeded.null = [seeded.task_ids[10]]
        await conn.execute("UPDATE catalog.tasks SET data = NULL WHERE id = $1", seeded.null[0])
        seeded.missing_file = [seeded.task_ids[11]]
        for task_id in (*seeded.broken, *seeded.null):
            seeded.expected.pop(task_id)
        gt = await ground_truth.create_ground_truth_dataset(
            conn, tenant, GroundTruthDatasetCreate(name=f"gt-{uuid.uuid4().hex[:6]}")
        )
        items = [
            GroundTruthItemIn(
                data_unit_id=unit_id,
                category="train",
                data=dm_of(i, f"img{i:05d}.png", *sizes[i % 3]),
            )
            for i, unit_id in enumerate(seeded.unit_ids[:20])
        ]
        version = await ground_truth.create_ground_truth_version(conn, tenant, gt.id, "v1", items)
        seeded.gt_version = version.id
    # One original gone from the bucket: that item's image fails, its annotations do not.
    missing = platform_storage(settings.s3)
    try:
        await missing.delete(f"{prefix}/img{11:05d}.png")
    finally:
        await missing.close()
    return seeded


async def make_destination(pool: asyncpg.Pool, tenant: str, root: Path) -> uuid.UUID:
    from pydantic import TypeAdapter

    storage = TypeAdapter(StorageCreate).validate_python(
        {"name": f"dst-{uuid.uuid4().hex[:6]}", "provider": "file", "config": {"root": str(root)}}
    )
    async with pool.acquire() as conn:
        row = await repository.create_storage(conn, tenant, storage)
    return row.id


def params_for(
    storage: uuid.UUID, seeded: Seeded, output_format: str, **extra: Any
) -> dict[str, Any]:
    return {
        "name": f"export-{output_format}",
        "storage": str(storage),
        "target": "task",
        "filter": {"project": str(seeded.project)},
        "path": "exports",
        "extra_params": {"output_format": output_format},
        **extra,
    }


def boxes(image: DMImage) -> list[tuple[str, tuple[float, ...]]]:
    return sorted(
        (a.class_name, tuple(a.bbox)) for a in image.annotations if a.type == "bounding_box"
    )


def last_metrics(events: list[RunEventBase], category: str) -> dict[str, float]:
    metrics = [e for e in events if e.type == "run.metric" and e.payload.category == category]  # type: ignore[attr-defined]
    return dict(metrics[-1].payload.values)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_tasks_export_in_every_format_reads_back_with_independent_readers(
    module_settings: Settings, pool: asyncpg.Pool, exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    count = 100
    seeded = await seed(pool, module_settings, tenant, count)
    storage = await make_destination(pool, tenant, tmp_path)
    results: dict[str, dict[str, Any]] = {}
    for output_format in ("dm", "coco", "yolo", "pascal_voc"):
        request = await exports.submit(
            "export", params_for(storage, seeded, output_format), tenant=tenant
        )
        terminal = await exports.wait_terminal(request.run_id, timeout=120)
        assert terminal.type == "run.succeeded", terminal
        results[output_format] = terminal.payload.result  # type: ignore[attr-defined]
        events = exports.events[request.run_id]
        assert last_metrics(events, "data_file") == {
            "stand_by": 0,
            "success": count - BROKEN - 1,
            "failed": BROKEN,
        }
        assert last_metrics(events, "original_file")["failed"] == 1
        codes = {e.payload.code for e in events if e.type == "run.log"}  # type: ignore[attr-defined]
        assert {"EXPORT_STARTED", "RESULTS_RETRIEVED", "CONVERSION_STARTED"} <= codes
        assert {"NULL_DATA_DETECTED", "CONVERSION_COMPLETED", "EXPORT_COMPLETED"} <= codes
        # The missing original is a warning naming its item, and the format is said.
        messages = {e.payload.code: e.payload.message for e in events if e.type == "run.log"}  # type: ignore[attr-defined]
        missing = f"task-{seeded.missing_file[0]}"
        assert messages["ORIGINAL_NOT_COPIED"].startswith(f"original file of {missing} not copied")
        assert messages["CONVERSION_STARTED"].endswith(f"to {output_format}")
        assert "MORE_ORIGINALS_NOT_COPIED" not in codes
    expected = {
        f"{task_id}_img{seeded.task_ids.index(task_id):05d}.png": dm
        for task_id, dm in seeded.expected.items()
    }
    for output_format, result in results.items():
        root = tmp_path / result["path"]
        assert result["path"] == f"exports/export-{output_format}"
        assert result["items"] == {
            "total": count,
            "exported": count - BROKEN - 1,
            "failed": BROKEN,
            "skipped": 1,
        }
        errors = orjson.loads((root / "error_file_list.json").read_bytes())
        assert sorted(name for name, _ in errors["json_file_name"]) == sorted(
            f"task-{t}" for t in seeded.broken
        )
        assert all("not valid DM" in reason for _, reason in errors["json_file_name"])
        assert [name for name, _ in errors["origin_file_name"]] == [
            f"task-{seeded.missing_file[0]}"
        ]
        reader = {
            "dm": read_dm_json,
            "coco": read_coco,
            "yolo": read_yolo,
            "pascal_voc": read_pascal_voc,
        }[output_format]
        if output_format == "yolo":
            # The item whose original is gone keeps its label file; the error list names it,
            # and a YOLO reader wants an image for every label.
            missing = seeded.missing_file[0]
            (root / f"labels/{missing}_img{seeded.task_ids.index(missing):05d}.txt").unlink()
            expected_here = {k: v for k, v in expected.items() if not k.startswith(f"{missing}_")}
        else:
            expected_here = expected
        dataset = reader(root)
        got = {image.file_name: image for image in dataset.images}
        assert set(got) == set(expected_here), output_format
        for name, dm in expected_here.items():
            want = boxes(dm.images[0])
            have = boxes(got[name])
            assert [c for c, _ in have] == [c for c, _ in want]
            for (_, a), (_, b) in zip(have, want, strict=True):
                assert a == pytest.approx(b, rel=1e-6)
        images = root / (
            "JPEGImages"
            if output_format == "pascal_voc"
            else "original_files"
            if output_format == "dm"
            else "images"
        )
        assert len(list(images.iterdir())) == count - BROKEN - 1 - 1  # the missing original
    # Independent readers agree.
    coco = COCO(str(tmp_path / results["coco"]["path"] / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    assert len(coco.getImgIds()) == count - BROKEN - 1
    yolo_root = tmp_path / results["yolo"]["path"]
    yolo = sv.DetectionDataset.from_yolo(
        images_directory_path=str(yolo_root / "images"),
        annotations_directory_path=str(yolo_root / "labels"),
        data_yaml_path=str(yolo_root / "data.yaml"),
    )
    assert yolo.classes == CLASSES
    assert len(yolo) == count - BROKEN - 2  # supervision reads only images that are there
    voc_root = tmp_path / results["pascal_voc"]["path"]
    voc = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(voc_root / "JPEGImages"),
        annotations_directory_path=str(voc_root / "Annotations"),
    )
    assert sorted(voc.classes) == CLASSES
    for path, _, detections in voc:
        task_id = int(Path(path).name.split("_")[0])
        want = sorted(
            (a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3])
            for a in seeded.expected[task_id].images[0].annotations
            if a.type == "bounding_box"
        )
        have = sorted(map(tuple, detections.xyxy.tolist()))
        assert len(have) == len(want)
        for got_box, want_box in zip(have, want, strict=True):
            assert got_box == pytest.approx(want_box, rel=1e-6)


async def test_a_second_export_with_the_same_name_gets_its_own_folder(
    module_settings: Settings, pool: asyncpg.Pool, exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, module_settings, tenant, 15)
    storage = await make_destination(pool, tenant, tmp_path)
    paths = []
    for _ in range(2):
        request = await exports.submit(
            "export",
            params_for(storage, seeded, "coco", save_original_file=False),
            tenant=tenant,
        )
        terminal = await exports.wait_terminal(request.run_id, timeout=60)
        assert terminal.type == "run.succeeded", terminal
        paths.append(terminal.payload.result["path"])  # type: ignore[attr-defined]
    assert paths == ["exports/export-coco", "exports/export-coco(1)"]
    assert not (tmp_path / paths[0] / "images").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_assignment_and_ground_truth_targets_in_every_format(
    module_settings: Settings, pool: asyncpg.Pool, exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, module_settings, tenant, 20)
    approved = seeded.task_ids[12:16]
    async with pool.acquire() as conn:
        for task_id in seeded.task_ids[12:18]:
            status = "approved" if task_id in approved else "rejected"
            await annotation.create_assignment(
                conn, tenant, task_id, seeded.expected[task_id], status=status
            )
    storage = await make_destination(pool, tenant, tmp_path)
    formats = ("dm", "coco", "yolo", "pascal_voc")
    requests = {}
    for output_format in formats:
        requests[("a", output_format)] = await exports.submit(
            "export",
            params_for(
                storage,
                seeded,
                output_format,
                target="assignment",
                name=f"a-{output_format}",
                filter={"project": str(seeded.project), "status": "approved"},
            ),
            tenant=tenant,
        )
        split = {"train": 0.5, "valid": 0.5}
        requests[("gt", output_format)] = await exports.submit(
            "export",
            params_for(
                storage,
                seeded,
                output_format,
                target="ground_truth",
                name=f"gt-{output_format}",
                filter={"ground_truth_dataset_version": str(seeded.gt_version)},
                extra_params={"output_format": output_format, "split": split},
            ),
            tenant=tenant,
        )
    bad = await exports.submit(
        "export",
        params_for(
            storage,
            seeded,
            "coco",
            target="ground_truth",
            name="bad",
            filter={"project": str(seeded.project)},
        ),
        tenant=tenant,
    )
    done = {
        key: await exports.wait_terminal(request.run_id, timeout=60)
        for key, request in requests.items()
    }
    failed = await exports.wait_terminal(bad.run_id, timeout=60)
    readers = {"dm": read_dm_json, "coco": read_coco, "pascal_voc": read_pascal_voc}
    for (target, output_format), terminal in done.items():
        assert terminal.type == "run.succeeded", (target, output_format, terminal)
        result = terminal.payload.result  # type: ignore[attr-defined]
        root = tmp_path / "exports" / f"{target}-{output_format}"
        want = 4 if target == "a" else 20
        assert result["items"]["exported"] == want
        folders = [root] if target == "a" else [root / "train", root / "valid"]
        if target == "gt":
            assert result["splits"] == ["train", "valid"]
        if output_format == "yolo":  # its reader wants every image; count the label files
            counts = [len(list((folder / "labels").iterdir())) for folder in folders]
        else:
            counts = [len(readers[output_format](folder).images) for folder in folders]
        assert sum(counts) == want and min(counts) > 0, (target, output_format, counts)
    assert failed.type == "run.failed"
    assert "ground_truth_dataset_version" in failed.payload.message  # type: ignore[attr-defined]


async def test_a_user_plugin_changes_the_output_through_the_hooks(
    settings: Settings, pool: asyncpg.Pool, own_exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, settings, tenant, 12)
    async with pool.acquire() as conn:  # an item with no box at all: the plugin skips it
        only_label = parse_dm(
            {
                "images": [
                    {
                        "file_name": "img00000.png",
                        "width": 64,
                        "height": 48,
                        "annotations": [{"id": "c", "type": "classification", "class_name": "dog"}],
                    }
                ]
            }
        )
        await annotation.set_task_data(conn, tenant, seeded.task_ids[0], only_label)
    storage = await make_destination(pool, tenant, tmp_path)
    async with export_worker(settings, plugin_path=[EXAMPLES]):
        request = await own_exports.submit(
            "export",
            params_for(storage, seeded, "dm", name="csv", save_original_file=False),
            tenant=tenant,
            plugin="export-csv",
        )
        terminal = await own_exports.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    root = tmp_path / "exports/csv"
    rows = (root / "annotations.csv").read_text().splitlines()
    exported = 12 - BROKEN - 1 - 1  # broken, null, and the one the hook skipped
    assert rows[0] == "image,class,x,y,width,height"
    assert len(rows) == 1 + 3 * exported
    assert (root / "summary.txt").read_text() == f"{3 * exported} boxes\n"
    assert terminal.payload.result["items"]["skipped"] == 2  # type: ignore[attr-defined]


async def test_nothing_to_export_and_an_unknown_storage_fail_clearly(
    pool: asyncpg.Pool, exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    storage = await make_destination(pool, tenant, tmp_path)
    empty = Seeded()
    empty.project = uuid.uuid4()
    unknown_project = await exports.submit(
        "export", params_for(storage, empty, "coco"), tenant=tenant
    )
    unknown_storage = await exports.submit(
        "export", params_for(uuid.uuid4(), empty, "coco"), tenant=tenant
    )
    first = await exports.wait_terminal(unknown_project.run_id, timeout=60)
    second = await exports.wait_terminal(unknown_storage.run_id, timeout=60)
    assert first.type == "run.failed" and "not found" in first.payload.message  # type: ignore[attr-defined]
    assert second.type == "run.failed" and "storage" in second.payload.message  # type: ignore[attr-defined]


async def test_cancel_mid_export_stops_quickly_and_deletes_the_folder(
    module_settings: Settings, pool: asyncpg.Pool, exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, module_settings, tenant, 300)
    storage = await make_destination(pool, tenant, tmp_path)
    request = await exports.submit(
        "export", params_for(storage, seeded, "yolo", max_concurrency=1), tenant=tenant
    )

    def converting() -> bool:
        return any(
            e.type == "run.log" and e.payload.code == "CONVERSION_STARTED"  # type: ignore[attr-defined]
            for e in exports.events[request.run_id]
        )

    await eventually(converting, timeout=60, message="the export never started converting")
    began = asyncio.get_running_loop().time()
    await exports.cancel(request.run_id)
    terminal = await exports.wait_terminal(request.run_id, timeout=30)
    took = asyncio.get_running_loop().time() - began
    assert terminal.type == "run.cancelled", terminal
    assert took < 5.0, f"cancel took {took:.2f}s"
    codes = {e.payload.code for e in exports.events[request.run_id] if e.type == "run.log"}  # type: ignore[attr-defined]
    assert "EXPORT_FAILED" not in codes
    left = [p for p in (tmp_path / "exports").rglob("*") if p.is_file()]
    assert left == []


async def test_a_jobs_pipeline_steps_are_spans_under_the_run_span(
    settings: Settings, pool: asyncpg.Pool, own_exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    storage = await make_destination(pool, tenant, tmp_path)
    unknown = Seeded()
    unknown.project = uuid.uuid4()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with otlp_receiver() as receiver:
            traced = settings.model_copy(update={"otel_exporter_otlp_endpoint": receiver.endpoint})
            async with export_worker(traced, tracer_provider=provider):
                request = await own_exports.submit(
                    "export", params_for(storage, unknown, "coco"), tenant=tenant
                )
                terminal = await own_exports.wait_terminal(request.run_id, timeout=60)
            await eventually(receiver.spans, timeout=60, message="the job exported no span")
            received = receiver.spans()
    finally:
        provider.shutdown()
    assert terminal.type == "run.failed"
    run_span = next(s for s in exporter.get_finished_spans() if s.name == "run export.export")
    spans = {received_span.span.name: received_span.span for received_span in received}
    assert {"step initialize", "rollback initialize"} <= set(spans)
    step = spans["step initialize"]
    assert step.trace_id == run_span.context.trace_id.to_bytes(16, "big")
    assert step.parent_span_id == run_span.context.span_id.to_bytes(8, "big")
    assert step.status.code == 2  # ERROR: the project does not exist


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_export_is_finished_by_attempt_2_without_duplicates(
    settings: Settings, pool: asyncpg.Pool, own_exports: RunClient, tenant: str, tmp_path: Path
) -> None:
    count = 900
    seeded = await seed(pool, settings, tenant, count)
    storage = await make_destination(pool, tenant, tmp_path / "dst")
    params = params_for(storage, seeded, "coco", max_concurrency=1)
    with ServiceProcesses(settings, "runmesh.export", tmp_path) as services:
        first = services.start()
        request = await own_exports.submit("export", params, tenant=tenant)

        async def some_progress() -> bool:
            return any(
                e.type == "run.progress" and e.payload.current >= 256  # type: ignore[attr-defined]
                for e in own_exports.events[request.run_id]
            )

        await eventually(some_progress, timeout=120, message="no progress")
        first.send_signal(signal.SIGKILL)
        first.wait()
        services.start()
        terminal = await own_exports.wait_terminal(request.run_id, timeout=240)
    assert terminal.type == "run.succeeded", (terminal, services.log_tail(1))
    assert terminal.attempt == 2
    exported = count - BROKEN - 1
    root = tmp_path / "dst" / "exports" / "export-coco"
    assert [p.name for p in (tmp_path / "dst" / "exports").iterdir()] == ["export-coco"]
    dataset = read_coco(root)
    assert len(dataset.images) == exported
    assert len({image.file_name for image in dataset.images}) == exported
    # A write that SIGKILL cut short leaves a hidden temporary file, never a partial image.
    images = [p for p in (root / "images").iterdir() if not p.name.startswith(".runmesh-tmp-")]
    assert len(images) == exported - 1  # all but the missing original
