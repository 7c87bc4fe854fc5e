"""The to_task service end to end (`file` method): real broker, PostgreSQL and moto S3; data
units carry a PNG and an annotation file in DM, COCO, YOLO or Pascal VOC."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from PIL import Image

from runmesh.catalog import annotation, repository
from runmesh.catalog.models import DataCollectionCreate, ProjectCreate
from runmesh.catalog.repository import NewDataUnit
from runmesh.converters import (
    CocoWriter,
    DatasetWriter,
    DmJsonWriter,
    PascalVocWriter,
    YoloWriter,
)
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.dm import BoundingBox, DMImage, parse_dm
from runmesh.storage import platform_storage
from runmesh.to_task import BUILTIN_PLUGIN
from runmesh.worker import Worker

from .conftest import RunClient, TrackingRunClient, service_worker, shared_worker_client

CATEGORY = "pre_annotation"
CLASSES = ["cat", "dog", "person"]
SIZES = [(64, 48), (40, 40), (32, 60)]
WRITERS: dict[str, tuple[type[DatasetWriter], str]] = {
    "dm": (DmJsonWriter, ".json"),
    "coco": (CocoWriter, ".json"),
    "yolo": (YoloWriter, ".txt"),
    "pascal_voc": (PascalVocWriter, ".xml"),
}
UNKNOWN = 0  # the unit whose file names a class outside the label schema
CORRUPT = 1  # the unit whose file is not in its format


@pytest.fixture
def tenant() -> str:
    return f"tt-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def module_to_task(module_settings: Settings) -> AsyncIterator[TrackingRunClient]:
    """One to_task service (default configuration) for the module's tests, and a client on
    its topics."""
    client = TrackingRunClient(module_settings, category=CATEGORY)
    await client.start()
    try:
        async with to_task_worker(module_settings):
            yield client
    finally:
        await client.stop()


@pytest.fixture
async def runs(module_to_task: TrackingRunClient) -> AsyncIterator[RunClient]:
    """Submits to_task requests to the module's service and collects their events; a test
    reads only its own runs, by run id."""
    async with shared_worker_client(module_to_task) as client:
        yield client


def to_task_worker(settings: Settings) -> contextlib.AbstractAsyncContextManager[Worker]:
    """The to_task service in this process, with its built-in plugin."""
    return service_worker(settings, CATEGORY, BUILTIN_PLUGIN, service="to_task")


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, format="PNG")
    return out.getvalue()


def source_image(index: int, file_name: str) -> DMImage:
    width, height = SIZES[index % 3]
    return DMImage(
        file_name=file_name,
        width=width,
        height=height,
        annotations=[
            BoundingBox(
                id=f"b{k}",
                class_name=CLASSES[(index + k) % 3],
                bbox=(1.5 + k, 2.25 + k, 10.0 + k, 7.5),
            )
            for k in range(2)
        ],
    )


def annotation_file(fmt: str, image: DMImage, tmp: Path) -> bytes:
    """What the format's writer writes for this one image (a one-image dataset for COCO)."""
    writer_cls, _ = WRITERS[fmt]
    classes = [*CLASSES, "zebra"] if fmt != "yolo" else [*CLASSES, *(f"x{i}" for i in range(7))]
    tmp.mkdir(parents=True)
    writer = writer_cls(tmp, classes)
    writer.outlet = []
    writer.add(image)
    files = writer.close()
    if writer.outlet:
        return writer.outlet[0][1]
    return (tmp / files[0]).read_bytes()


class Seeded:
    def __init__(self) -> None:
        self.project = uuid.UUID(int=0)
        self.unit_ids: list[int] = []
        self.expected: dict[int, DMImage] = {}  # data unit id → the source annotations


async def seed(
    pool: asyncpg.Pool, settings: Settings, tenant: str, fmt: str, count: int, tmp: Path
) -> Seeded:
    seeded = Seeded()
    _, extension = WRITERS[fmt]
    bucket = platform_storage(settings.s3)
    limit = asyncio.Semaphore(16)
    units: list[NewDataUnit] = []
    sources: dict[str, DMImage] = {}

    async def upload(index: int) -> None:
        key = f"u{index:05d}"
        image = source_image(index, f"{key}.png")
        if index == UNKNOWN:
            wrong = BoundingBox(id="z", class_name="zebra", bbox=(1, 1, 2, 2))
            if fmt == "yolo":  # YOLO names classes by id: id 9, past the label schema
                wrong = BoundingBox(id="z", class_name="x6", bbox=(1, 1, 2, 2))
            image = image.model_copy(update={"annotations": [*image.annotations, wrong]})
        data = annotation_file(fmt, image, tmp / key)
        if index == CORRUPT:
            data = data[: len(data) // 2] + b"\x00garbage{"
        files: dict[str, Any] = {}
        async with limit:
            for spec, path, content, media in (
                ("image", f"{tenant}/{key}.png", png(image.width, image.height), "image/png"),
                ("label", f"{tenant}/labels/{key}{extension}", data, None),
            ):
                info = await bucket.write_bytes(path, content)
                files[spec] = {
                    "uri": bucket.url(path),
                    "size": info.size,
                    "checksum": info.checksum,
                    "media_type": media,
                }
        units.append(NewDataUnit(unit_key=key, files=files))
        sources[key] = image

    try:
        await asyncio.gather(*(upload(i) for i in range(count)))
    finally:
        await bucket.close()
    units.sort(key=lambda unit: unit.unit_key)
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"col-{uuid.uuid4().hex[:6]}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True},
                {"name": "label", "required": True, "extensions": [extension]},
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
    for unit_id, unit in zip(seeded.unit_ids, units, strict=True):
        seeded.expected[unit_id] = sources[unit.unit_key]
    return seeded


def params_for(seeded: Seeded, **extra: Any) -> dict[str, Any]:
    return {
        "name": "pre-annotate",
        "project": str(seeded.project),
        "target_specification_name": "label",
        **extra,
    }


def boxes(image: DMImage) -> list[tuple[str, tuple[float, ...]]]:
    return sorted(
        (a.class_name, tuple(a.bbox)) for a in image.annotations if a.type == "bounding_box"
    )


async def tasks_by_unit(pool: asyncpg.Pool, tenant: str, seeded: Seeded) -> dict[int, Any]:
    async with pool.acquire() as conn:
        rows = await annotation.list_tasks(conn, tenant, project_id=seeded.project, limit=1000)
    return {row.data_unit_id: row for row in rows}


@pytest.mark.parametrize("fmt", ["dm", "coco", "yolo", "pascal_voc"])
@pytest.mark.timeout(180)
async def test_file_method_annotates_tasks_from_each_format(
    settings: Settings,
    pool: asyncpg.Pool,
    runs: RunClient,
    tenant: str,
    tmp_path: Path,
    fmt: str,
) -> None:
    count = 8
    seeded = await seed(pool, settings, tenant, fmt, count, tmp_path)
    first = await runs.submit("to_task", params_for(seeded, batch_size=3), tenant=tenant)
    terminal = await runs.wait_terminal(first.run_id, timeout=90)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert result["tasks_created"] == count
    assert result["annotated"] == count - 2
    assert result["skipped"] == 0
    failed = {f["data_unit_id"]: f["reason"] for f in result["failed"]}
    assert set(failed) == {seeded.unit_ids[UNKNOWN], seeded.unit_ids[CORRUPT]}
    unknown_reason = failed[seeded.unit_ids[UNKNOWN]]
    if fmt == "yolo":
        assert "u00000.txt, line 3: class id 9 is not in 0..2" in unknown_reason
    else:
        assert "'zebra'" in unknown_reason and "label schema" in unknown_reason
    assert "u00001" in failed[seeded.unit_ids[CORRUPT]]  # names the file

    tasks = await tasks_by_unit(pool, tenant, seeded)
    assert sorted(tasks) == sorted(seeded.unit_ids)
    for unit_id, source in seeded.expected.items():
        task = tasks[unit_id]
        if unit_id in failed:
            assert task.data is None
            continue
        (image,) = parse_dm(task.data).images
        assert image.file_name == source.file_name
        assert (image.width, image.height) == (source.width, source.height)
        got, want = boxes(image), boxes(source)
        assert [name for name, _ in got] == [name for name, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-6)

    metrics = [
        e.payload.values  # type: ignore[attr-defined]
        for e in runs.events[first.run_id]
        if e.type == "run.metric" and e.payload.category == "annotation"  # type: ignore[attr-defined]
    ]
    assert metrics[-1] == {"stand_by": 0, "success": count - 2, "failed": 2}

    again = await runs.submit("to_task", params_for(seeded), tenant=tenant)
    terminal = await runs.wait_terminal(again.run_id, timeout=90)
    assert terminal.type == "run.succeeded", terminal
    second = terminal.payload.result  # type: ignore[attr-defined]
    assert second["tasks_created"] == 0
    assert second["skipped"] == count - 2
    assert second["annotated"] == 0
    assert len(second["failed"]) == 2


async def test_bad_params_fail_clearly(
    settings: Settings, pool: asyncpg.Pool, runs: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, settings, tenant, "dm", 3, tmp_path)
    inference = await runs.submit("to_task", params_for(seeded, method="inference"), tenant=tenant)
    spec = await runs.submit(
        "to_task", params_for(seeded, target_specification_name="nope"), tenant=tenant
    )
    project = await runs.submit(
        "to_task", params_for(Seeded(), project=str(uuid.uuid4())), tenant=tenant
    )
    failures = [
        await runs.wait_terminal(request.run_id, timeout=60)
        for request in (inference, spec, project)
    ]
    messages = [event.payload.message for event in failures]  # type: ignore[attr-defined]
    assert all(event.type == "run.failed" for event in failures), failures
    assert "method 'inference' needs model" in messages[0]
    assert "'nope'" in messages[1] and "file specification" in messages[1]
    assert "not found" in messages[2]


@pytest.mark.timeout(180)
async def test_cancel_stops_within_two_seconds(
    settings: Settings, pool: asyncpg.Pool, runs: RunClient, tenant: str, tmp_path: Path
) -> None:
    seeded = await seed(pool, settings, tenant, "coco", 400, tmp_path)
    request = await runs.submit(
        "to_task", params_for(seeded, max_concurrency=1, batch_size=20), tenant=tenant
    )

    def annotating() -> bool:
        return any(
            e.type == "run.progress"
            and e.payload.category == "annotate_task_data"  # type: ignore[attr-defined]
            and e.payload.current > 0  # type: ignore[attr-defined]
            for e in runs.events[request.run_id]
        )

    await eventually(annotating, timeout=60, message="the run never started annotating")
    began = asyncio.get_running_loop().time()
    await runs.cancel(request.run_id)
    terminal = await runs.wait_terminal(request.run_id, timeout=30)
    took = asyncio.get_running_loop().time() - began
    assert terminal.type == "run.cancelled", terminal
    assert took < 2.0, f"cancel took {took:.2f}s"
    tasks = await tasks_by_unit(pool, tenant, seeded)
    assert all(task.data is None for task in tasks.values())  # nothing saved, or rolled back
