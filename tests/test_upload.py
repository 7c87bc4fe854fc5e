"""The upload service end to end: a real worker, Tansu, PostgreSQL and moto S3.

Each test builds a source tree on disk (a `file://` storage), submits an upload and checks
the data units in the catalog, the objects in the bucket, metrics and the result.

The tests that need the upload service as it ships share one in-process worker (`uploads`:
started once per module, on topics of the module's own). A test that needs other settings,
or that stops or kills workers, starts its own on its own topics (`own_uploads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiobotocore.session import get_session
from openpyxl import Workbook

from runmesh.catalog import repository
from runmesh.catalog.models import STORAGE_CREATE, DataCollectionCreate
from runmesh.core.events import MetricPayload, ProgressPayload, RunEventBase
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.upload import BUILTIN_PLUGIN
from runmesh.worker import Worker

from .conftest import (
    RunClient,
    ServiceProcesses,
    TrackingRunClient,
    service_worker,
    shared_worker_client,
)

CATEGORY = "upload"
KB = 1024
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def tenant() -> str:
    return f"up-{uuid.uuid4().hex[:8]}"


def upload_worker(
    settings: Settings, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[Worker]:
    """The upload service in this process, with its built-in plugin (plus RUNMESH_PLUGIN_PATH's)."""
    return service_worker(settings, CATEGORY, BUILTIN_PLUGIN, service="upload", **overrides)


@pytest.fixture(scope="module")
async def module_upload_worker(module_settings: Settings) -> AsyncIterator[Worker]:
    """One upload service, with the default configuration, for the module's tests."""
    async with upload_worker(module_settings) as worker:
        yield worker


@pytest.fixture(scope="module")
async def module_uploads(module_settings: Settings) -> AsyncIterator[TrackingRunClient]:
    """A client on the module worker's topics, shared by the tests that use that worker."""
    client = TrackingRunClient(module_settings, category=CATEGORY)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def uploads(
    module_upload_worker: Worker, module_uploads: TrackingRunClient
) -> AsyncIterator[RunClient]:
    """Submits upload requests to the module's upload service (default configuration, already
    serving) and collects their events; a test reads only its own runs', by run id. Runs of
    the test that did not end are cancelled at teardown: the next test finds the worker idle."""
    async with shared_worker_client(module_uploads) as client:
        yield client


@pytest.fixture
async def own_uploads(settings: Settings) -> AsyncIterator[RunClient]:
    """Submits upload requests on the test's own topics, for a test that starts (and stops or
    kills) upload services of its own: none of them joins the module worker's group."""
    client = RunClient(settings, category=CATEGORY)
    await client.start()
    yield client
    await client.stop()


async def make_storage(pool: asyncpg.Pool, tenant: str, root: Path) -> uuid.UUID:
    storage = STORAGE_CREATE.validate_python(
        {"name": f"src-{uuid.uuid4().hex[:6]}", "provider": "file", "config": {"root": str(root)}}
    )
    async with pool.acquire() as conn:
        row = await repository.create_storage(conn, tenant, storage)
    return row.id


async def make_collection(
    pool: asyncpg.Pool, tenant: str, meta_schema: dict[str, Any] | None = None
) -> uuid.UUID:
    collection = DataCollectionCreate.model_validate(
        {
            "name": f"col-{uuid.uuid4().hex[:6]}",
            "data_unit_meta_schema": meta_schema,
            "file_specifications": [
                {
                    "name": "image",
                    "required": True,
                    "extensions": [".jpg", ".png"],
                    "is_primary": True,
                },
                {"name": "label", "required": True, "extensions": [".json"]},
                {"name": "extra", "required": False, "extensions": [".txt"]},
            ],
        }
    )
    async with pool.acquire() as conn:
        row = await repository.create_collection(conn, tenant, collection)
    return row.id


def write(path: Path, size: int, seed: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(seed.encode()).digest()
    path.write_bytes((block * (size // len(block) + 1))[:size])


def single_path_tree(root: Path) -> None:
    """Spec-named folders: 4 valid units (one nested), 3 invalid ones, one stray file."""
    src = root / "ds"
    for stem in ("a", "b", "c", "sub/d"):
        write(src / "image" / f"{stem}.jpg", 3 * KB, stem)
        write(src / "label" / f"{stem}.json", 200, stem + "l")
    write(src / "extra" / "a.txt", 50, "ax")
    write(src / "image" / "e.jpg", 3 * KB, "e")  # no label: missing a required spec
    write(src / "image" / "f.jpg", 40 * KB, "f")  # over max_file_size_mb
    write(src / "label" / "f.json", 200, "fl")
    write(src / "image" / "g.bmp", 3 * KB, "g")  # extension the image spec refuses
    write(src / "label" / "g.json", 200, "gl")
    write(src / "readme.md", 10, "r")  # no specification takes .md


def many_units(root: Path, count: int, image_size: int) -> None:
    """`count` units (an image and a label each) under root/ds, in spec-named folders."""
    for index in range(count):
        write(root / "ds" / "image" / f"u{index:03}.jpg", image_size, str(index))
        write(root / "ds" / "label" / f"u{index:03}.json", 100, str(index))


async def wait_uploaded(uploads: RunClient, run_id: uuid.UUID, fraction: float) -> None:
    """Until the run reported at least `fraction` of its files uploaded."""

    def reached() -> bool:
        return any(
            isinstance(p := e.payload, ProgressPayload)
            and p.category == "upload_data_files"
            and p.total
            and p.current >= p.total * fraction
            for e in uploads.events[run_id]
        )

    await eventually(reached, timeout=120, interval=0.02, message="upload did not progress")


def excel(path: Path, rows: list[list[Any]]) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


@contextlib.asynccontextmanager
async def bucket(settings: Settings) -> AsyncIterator[Any]:
    """An S3 client on the platform bucket (the sandbox's moto)."""
    extra: dict[str, Any] = {"region_name": settings.s3_region}
    if settings.s3_access_key_id:
        extra["aws_access_key_id"] = settings.s3_access_key_id
        assert settings.s3_secret_access_key is not None
        extra["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    async with get_session().create_client(
        "s3", endpoint_url=settings.s3_endpoint_url, **extra
    ) as client:
        yield client


async def objects(settings: Settings, prefix: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    async with bucket(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                response = await s3.get_object(Bucket=settings.s3_bucket, Key=item["Key"])
                async with response["Body"] as body:
                    found[item["Key"]] = await body.read()
    return found


async def units_of(pool: asyncpg.Pool, run_id: uuid.UUID) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT * FROM catalog.data_units WHERE upload_run_id = $1 ORDER BY id", run_id
    )
    return {row["unit_key"]: row for row in rows}


def last_metrics(events: list[RunEventBase], category: str) -> dict[str, float]:
    payloads = [e.payload for e in events if e.type == "run.metric"]
    values = [p.values for p in payloads if isinstance(p, MetricPayload) and p.category == category]
    assert values, f"no {category} metrics"
    return values[-1]


async def test_single_path_upload_creates_exactly_the_valid_units(
    module_settings: Settings, pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    single_path_tree(tmp_path)
    excel(
        tmp_path / "ds" / "meta.xlsx",
        [["file", "weather", "count"], ["a.jpg", "sunny", 1], ["b", "rain", 2]],
    )
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "first upload",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "excel_metadata_path": "meta.xlsx",  # relative to `path`
        "max_file_size_mb": 0.03,
        "creating_data_unit_batch_size": 2,
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    units = await units_of(pool, request.run_id)
    assert set(units) == {"a", "b", "c", "d"}  # d's files sit in sub/: units pair by stem
    assert set(units["a"]["files"]) == {"image", "label", "extra"}
    assert set(units["b"]["files"]) == {"image", "label"}
    assert units["a"]["meta"] == {"weather": "sunny", "count": 1}
    assert units["b"]["meta"] == {"weather": "rain", "count": 2}
    assert units["c"]["meta"] == {}
    failed_units = {f["item"]: f["reason"] for f in result["failed_units"]}
    assert set(failed_units) == {"e", "f", "g"}
    assert "missing required file specification(s) label" in failed_units["e"]
    assert "over max_file_size_mb" in failed_units["f"]
    assert "extension .bmp not allowed" in failed_units["g"]
    failed_files = {f["item"]: f["reason"] for f in result["failed_files"]}
    # A file no specification takes says so, naming what the collection accepts.
    assert failed_files["ds/readme.md"] == (
        "no file specification accepts extension .md "
        "(the collection's: image: .jpg, .png; label: .json; extra: .txt)"
    )
    assert set(failed_files) == {
        "ds/readme.md",
        "ds/image/e.jpg",
        "ds/image/f.jpg",
        "ds/label/f.json",
        "ds/image/g.bmp",
        "ds/label/g.json",
    }
    assert result["data_units"] == {"success": 4, "failed": 3}
    assert result["data_unit_ids"]["count"] == 4
    events = uploads.events[request.run_id]
    assert last_metrics(events, "data_file") == {"stand_by": 0, "success": 9, "failed": 6}
    assert last_metrics(events, "data_unit") == {"stand_by": 0, "success": 4, "failed": 3}
    progress = {p.category for e in events if isinstance(p := e.payload, ProgressPayload)}
    assert progress == {"analyze_collection", "upload_data_files", "generate_data_units"}
    # Every file of every unit is in the bucket, byte for byte, under the run's prefix.
    prefix = f"{tenant}/{collection}/{request.run_id}"
    stored = await objects(module_settings, prefix)
    assert len(stored) == 9
    for unit in units.values():
        for spec, info in unit["files"].items():
            key = info["uri"].removeprefix(f"s3://{module_settings.s3_bucket}/")
            assert key.startswith(f"{prefix}/{spec}/")
            (source,) = (tmp_path / "ds" / spec).rglob(unit["unit_key"] + Path(key).suffix)
            assert stored[key] == source.read_bytes()
            assert info["checksum"] == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
            assert info["size"] == source.stat().st_size


async def test_multi_path_upload_takes_each_spec_from_its_folder(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    for stem in ("x", "y"):
        write(tmp_path / "pics" / "2024" / f"{stem}.png", 2 * KB, stem)
        write(tmp_path / "anns" / f"{stem}.json", 100, stem)
    write(tmp_path / "anns" / "deeper" / "z.json", 100, "z")  # flat: not looked at
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "multi",
        "storage": str(storage),
        "data_collection": str(collection),
        "assets": {
            "image": {"path": "pics", "is_recursive": True},
            "label": {"path": "anns", "is_recursive": False},
            "extra": {"path": "no/such/folder"},  # optional: skipped with a warning
        },
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    units = await units_of(pool, request.run_id)
    assert set(units) == {"x", "y"}  # images from pics/2024/, labels from anns/ (not deeper/)
    assert set(units["x"]["files"]) == {"image", "label"}
    assert result["failed_units"] == [] and result["failed_files"] == []
    logs = [e.payload.message for e in uploads.events[request.run_id] if e.type == "run.log"]  # type: ignore[attr-defined]
    assert any(m.startswith("skipping optional 'extra'") for m in logs)


def multi_path_tree(root: Path) -> None:
    """One folder per specification: 3 valid units (one nested below pics/), 3 invalid ones,
    and a label the flat `anns/` asset does not look at."""
    write(root / "pics" / "2024" / "a.png", 3 * KB, "a")
    write(root / "pics" / "2024" / "b.jpg", 3 * KB, "b")
    write(root / "pics" / "2024" / "deep" / "c.png", 3 * KB, "c")
    for stem in ("a", "b", "c"):
        write(root / "anns" / f"{stem}.json", 200, stem + "l")
    write(root / "notes" / "a.txt", 50, "ax")
    write(root / "pics" / "e.png", 3 * KB, "e")  # its label is in anns/deeper/: not looked at
    write(root / "anns" / "deeper" / "e.json", 200, "el")
    write(root / "pics" / "f.jpg", 40 * KB, "f")  # over max_file_size_mb
    write(root / "anns" / "f.json", 200, "fl")
    write(root / "pics" / "g.bmp", 3 * KB, "g")  # extension the image spec refuses
    write(root / "anns" / "g.json", 200, "gl")


async def test_multi_path_upload_creates_exactly_the_valid_units(
    module_settings: Settings, pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    multi_path_tree(tmp_path)
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "multi, checked",
        "storage": str(storage),
        "data_collection": str(collection),
        "assets": {
            "image": {"path": "pics", "is_recursive": True},
            "label": {"path": "anns", "is_recursive": False},
            "extra": {"path": "notes"},
        },
        "max_file_size_mb": 0.03,
        "creating_data_unit_batch_size": 2,
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    units = await units_of(pool, request.run_id)
    assert set(units) == {"a", "b", "c"}  # each spec from its asset; units pair by stem
    assert set(units["a"]["files"]) == {"image", "label", "extra"}
    assert set(units["b"]["files"]) == {"image", "label"}
    assert set(units["c"]["files"]) == {"image", "label"}
    failed_units = {f["item"]: f["reason"] for f in result["failed_units"]}
    assert set(failed_units) == {"e", "f", "g"}
    assert "missing required file specification(s) label" in failed_units["e"]
    assert "over max_file_size_mb" in failed_units["f"]
    assert "extension .bmp not allowed" in failed_units["g"]
    failed_files = {f["item"]: f["reason"] for f in result["failed_files"]}
    assert set(failed_files) == {
        "pics/e.png",
        "pics/f.jpg",
        "anns/f.json",
        "pics/g.bmp",
        "anns/g.json",
    }
    assert failed_files["anns/f.json"].startswith("unit 'f': ")  # named with its unit's reason
    assert result["data_files"] == {"success": 7, "failed": 5, "already_uploaded": 0}
    assert result["data_units"] == {"success": 3, "failed": 3}
    assert result["data_unit_ids"]["count"] == 3
    events = uploads.events[request.run_id]
    assert last_metrics(events, "data_file") == {"stand_by": 0, "success": 7, "failed": 5}
    assert last_metrics(events, "data_unit") == {"stand_by": 0, "success": 3, "failed": 3}
    # Every file of every unit is in the bucket, byte for byte, under the run's prefix.
    sources = {
        ("a", "image"): "pics/2024/a.png",
        ("b", "image"): "pics/2024/b.jpg",
        ("c", "image"): "pics/2024/deep/c.png",
        ("a", "label"): "anns/a.json",
        ("b", "label"): "anns/b.json",
        ("c", "label"): "anns/c.json",
        ("a", "extra"): "notes/a.txt",
    }
    prefix = f"{tenant}/{collection}/{request.run_id}"
    stored = await objects(module_settings, prefix)
    assert len(stored) == len(sources)
    for (key, spec), source in sources.items():
        info = units[key]["files"][spec]
        data = (tmp_path / source).read_bytes()
        stored_key = info["uri"].removeprefix(f"s3://{module_settings.s3_bucket}/")
        assert stored_key == f"{prefix}/{spec}/{key}{Path(source).suffix}"
        assert stored[stored_key] == data
        assert info["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert info["size"] == len(data)


async def test_the_single_data_unit_strategy_creates_the_same_units_as_batch(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    many_units(tmp_path, 5, 2 * KB)
    write(tmp_path / "ds" / "extra" / "u001.txt", 50, "x")
    write(tmp_path / "ds" / "image" / "lonely.jpg", 100, "lonely")  # no label: invalid
    excel(tmp_path / "meta.xlsx", [["file", "weather"], ["u002", "rain"]])
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    base = {
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "excel_metadata_path": "meta.xlsx",
    }
    single = await uploads.submit(
        "upload", {**base, "name": "single", "creating_data_unit_batch_size": 1}, tenant=tenant
    )
    batch = await uploads.submit(
        "upload", {**base, "name": "batch", "creating_data_unit_batch_size": 2}, tenant=tenant
    )
    ends = [await uploads.wait_terminal(r.run_id, timeout=60) for r in (single, batch)]
    assert [e.type for e in ends] == ["run.succeeded"] * 2, ends
    results = [e.payload.result for e in ends]  # type: ignore[attr-defined]

    def written(run_id: uuid.UUID) -> list[str]:
        logs = [e.payload.message for e in uploads.events[run_id] if e.type == "run.log"]  # type: ignore[attr-defined]
        return [m for m in logs if m.startswith("created ")]

    assert written(single.run_id) == ["created 5 data units (one unit per statement)"]
    assert written(batch.run_id) == ["created 5 data units (batches of 2)"]

    def comparable(units: dict[str, asyncpg.Record]) -> dict[str, Any]:
        # The uris differ by run id only; files are the same bytes.
        return {
            key: (
                {spec: (f["size"], f["checksum"]) for spec, f in unit["files"].items()},
                unit["meta"],
            )
            for key, unit in units.items()
        }

    single_units = await units_of(pool, single.run_id)
    batch_units = await units_of(pool, batch.run_id)
    assert set(single_units) == {f"u{i:03}" for i in range(5)}
    assert list(single_units) == list(batch_units)  # in id order: written in the same order
    assert comparable(single_units) == comparable(batch_units)
    assert single_units["u002"]["meta"] == {"weather": "rain"}
    assert set(single_units["u001"]["files"]) == {"image", "label", "extra"}
    for result in results:
        assert result["data_units"] == {"success": 5, "failed": 1}
        assert result["failed_units"] == [
            {"item": "lonely", "reason": "missing required file specification(s) label"}
        ]
    for run in (single, batch):
        events = uploads.events[run.run_id]
        assert last_metrics(events, "data_unit") == {"stand_by": 0, "success": 5, "failed": 1}


async def test_single_path_upload_without_is_recursive_ignores_nested_folders(
    module_settings: Settings, pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    src = tmp_path / "ds"
    write(src / "a.jpg", 100, "a")  # directly in `path`: matched to a spec by extension
    write(src / "a.json", 100, "al")
    write(src / "a.txt", 50, "ax")
    write(src / "more" / "b.jpg", 100, "b")  # nested: not looked at
    write(src / "more" / "b.json", 100, "bl")
    write(src / "more" / "deeper" / "a.json", 100, "dup")  # would repeat a's label
    write(src / "image" / "sub" / "c.jpg", 100, "c")  # nested below a spec folder
    write(src / "label" / "sub" / "c.json", 100, "cl")
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "flat",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "is_recursive": False,
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    units = await units_of(pool, request.run_id)
    assert set(units) == {"a"}
    assert set(units["a"]["files"]) == {"image", "label", "extra"}
    assert result["failed_units"] == [] and result["failed_files"] == []
    assert result["data_files"]["success"] == 3
    stored = await objects(module_settings, f"{tenant}/{collection}/{request.run_id}")
    label = units["a"]["files"]["label"]["uri"].removeprefix(f"s3://{module_settings.s3_bucket}/")
    assert stored[label] == (src / "a.json").read_bytes()  # not more/deeper/a.json


async def test_single_path_upload_without_is_recursive_still_reads_the_spec_folders(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    src = tmp_path / "ds"
    write(src / "image" / "a.jpg", 100, "a")
    write(src / "label" / "a.json", 100, "al")
    write(src / "image" / "sub" / "b.jpg", 100, "b")  # nested below a spec folder: ignored
    write(src / "label" / "sub" / "b.json", 100, "bl")
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "flat spec folders",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "is_recursive": False,
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    assert set(await units_of(pool, request.run_id)) == {"a"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [("../outside", "cannot list"), ("/etc", "cannot list")],
)
async def test_paths_escaping_the_storage_are_refused(
    pool: asyncpg.Pool,
    uploads: RunClient,
    tenant: str,
    tmp_path: Path,
    path: str,
    expected: str,
) -> None:
    root = tmp_path / "root"
    write(root / "image" / "a.jpg", 100, "a")
    write(tmp_path / "outside" / "image" / "b.jpg", 100, "b")
    storage = await make_storage(pool, tenant, root)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "escape",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": path,
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.failed"
    assert expected in terminal.payload.message  # type: ignore[attr-defined]
    assert await units_of(pool, request.run_id) == {}


async def test_a_symlink_out_of_the_storage_is_not_uploaded(
    module_settings: Settings, pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    write(root / "ds" / "image" / "a.jpg", 100, "a")
    write(root / "ds" / "label" / "a.json", 100, "al")
    write(tmp_path / "secret.json", 100, "secret")
    (root / "ds" / "label" / "b.json").symlink_to(tmp_path / "secret.json")
    write(root / "ds" / "image" / "b.jpg", 100, "b")
    storage = await make_storage(pool, tenant, root)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "links",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    units = await units_of(pool, request.run_id)
    assert set(units) == {"a"}  # b lost its label: the escaping link was never read
    stored = await objects(module_settings, f"{tenant}/{collection}/{request.run_id}")
    assert all(b"secret" not in value for value in stored.values())
    assert len(stored) == 2


async def test_an_http_storage_on_loopback_is_refused(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str
) -> None:
    storage = STORAGE_CREATE.validate_python(
        {"name": "local-web", "provider": "http", "config": {"base_url": "http://127.0.0.1:9/"}}
    )
    async with pool.acquire() as conn:
        row = await repository.create_storage(conn, tenant, storage)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "ssrf",
        "storage": str(row.id),
        "data_collection": str(collection),
        "path": "",
        "excel_metadata_path": "meta.xlsx",  # the first thing read from the source
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.failed"
    message = terminal.payload.message  # type: ignore[attr-defined]
    assert "cannot read the Excel metadata" in message
    assert "127.0.0.1" in message


async def test_a_malformed_workbook_fails_the_run_clearly(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    write(tmp_path / "ds" / "image" / "a.jpg", 100, "a")
    write(tmp_path / "ds" / "label" / "a.json", 100, "al")
    (tmp_path / "ds" / "meta.xlsx").write_bytes(b"this is not a zip file")
    excel(tmp_path / "ds" / "dup.xlsx", [["file", "k"], ["a", 1], ["a.jpg", 2]])
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    base = {"name": "x", "storage": str(storage), "data_collection": str(collection), "path": "ds"}
    broken = await uploads.submit(
        "upload", {**base, "excel_metadata_path": "ds/meta.xlsx"}, tenant=tenant
    )
    duplicated = await uploads.submit(
        "upload", {**base, "excel_metadata_path": "dup.xlsx"}, tenant=tenant
    )
    missing = await uploads.submit(
        "upload", {**base, "excel_metadata_path": "nope.xlsx"}, tenant=tenant
    )
    ends = [
        await uploads.wait_terminal(r.run_id, timeout=60) for r in (broken, duplicated, missing)
    ]
    messages = [e.payload.message for e in ends]  # type: ignore[attr-defined]
    assert [e.type for e in ends] == ["run.failed"] * 3
    assert "not a readable .xlsx workbook" in messages[0]
    assert "appears twice (rows 2 and 3)" in messages[1]
    assert "Excel metadata not found" in messages[2]


async def test_cancel_mid_upload_stops_within_2s_and_rolls_back(
    module_settings: Settings, pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    many_units(tmp_path, 150, 64 * KB)
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "to cancel",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "max_concurrency": 1,
    }
    request = await uploads.submit("upload", params, tenant=tenant)

    await wait_uploaded(uploads, request.run_id, 5 / 300)
    began = asyncio.get_running_loop().time()
    await uploads.cancel(request.run_id)
    terminal = await uploads.wait_terminal(request.run_id, timeout=30)
    took = asyncio.get_running_loop().time() - began
    assert terminal.type == "run.cancelled", terminal
    assert took < 2.0, f"cancel took {took:.2f}s"
    assert await objects(module_settings, f"{tenant}/{collection}/{request.run_id}") == {}
    assert await units_of(pool, request.run_id) == {}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_upload_is_finished_by_attempt_2_without_duplicates(
    settings: Settings,
    pool: asyncpg.Pool,
    own_uploads: RunClient,
    tenant: str,
    tmp_path: Path,
) -> None:
    count = 120
    many_units(tmp_path, count, 32 * KB)
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "killed",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "max_concurrency": 1,
        "creating_data_unit_batch_size": 7,
    }
    with ServiceProcesses(settings, "runmesh.upload", tmp_path) as services:
        first = services.start()
        request = await own_uploads.submit("upload", params, tenant=tenant)

        await wait_uploaded(own_uploads, request.run_id, 1 / 3)
        first.send_signal(signal.SIGKILL)
        first.wait()
        services.start()
        terminal = await own_uploads.wait_terminal(request.run_id, timeout=180)
    assert terminal.type == "run.succeeded", (terminal, services.log_tail(1))
    assert terminal.attempt == 2
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert result["data_files"]["already_uploaded"] > 0
    units = await units_of(pool, request.run_id)
    assert len(units) == count
    stored = await objects(settings, f"{tenant}/{collection}/{request.run_id}")
    referenced = {
        info["uri"].removeprefix(f"s3://{settings.s3_bucket}/")
        for unit in units.values()
        for info in unit["files"].values()
    }
    assert set(stored) == referenced  # no orphan object, none missing
    assert len(stored) == 2 * count


async def test_a_user_plugin_extends_the_uploader_through_its_hooks(
    settings: Settings, pool: asyncpg.Pool, own_uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    write(tmp_path / "ds" / "image" / "big.jpg", 4 * KB, "big")
    write(tmp_path / "ds" / "label" / "big.json", 100, "bl")
    write(tmp_path / "ds" / "image" / "tiny.jpg", 10, "tiny")
    write(tmp_path / "ds" / "label" / "tiny.json", 100, "tl")
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "hooks",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "min_image_bytes": 1000,
    }
    async with upload_worker(settings, plugin_path=[EXAMPLES]):
        request = await own_uploads.submit(
            "upload", params, tenant=tenant, plugin="upload-min-size"
        )
        terminal = await own_uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert set(await units_of(pool, request.run_id)) == {"big"}
    assert result["failed_units"] == [
        {"item": "tiny", "reason": "ds/image/tiny.jpg: 10 bytes, under min_image_bytes=1000"}
    ]
    logs = [e.payload.message for e in own_uploads.events[request.run_id] if e.type == "run.log"]  # type: ignore[attr-defined]
    assert any(message.startswith("stored ds/image/big.jpg (sha256:") for message in logs)


async def test_meta_must_match_the_collections_schema(
    pool: asyncpg.Pool, uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    for stem in ("a", "b", "c"):
        write(tmp_path / "ds" / "image" / f"{stem}.jpg", 100, stem)
        write(tmp_path / "ds" / "label" / f"{stem}.json", 100, stem + "l")
    excel(tmp_path / "meta.xlsx", [["file", "weather"], ["a", "sunny"], ["b", 5]])
    schema = {
        "type": "object",
        "properties": {"weather": {"type": "string"}},
        "required": ["weather"],
    }
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant, meta_schema=schema)
    params = {
        "name": "schema",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "excel_metadata_path": "meta.xlsx",
    }
    request = await uploads.submit("upload", params, tenant=tenant)
    terminal = await uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.succeeded", terminal
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert set(await units_of(pool, request.run_id)) == {"a"}
    reasons = {f["item"]: f["reason"] for f in result["failed_units"]}
    assert reasons == {
        "b": "meta does not match the collection's data_unit_meta_schema: "
        "weather: 5 is not of type 'string'",
        "c": "meta does not match the collection's data_unit_meta_schema: "
        "(meta): 'weather' is a required property",
    }


async def test_a_worker_shutting_down_mid_upload_keeps_the_work_for_attempt_2(
    settings: Settings, pool: asyncpg.Pool, own_uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    count = 60
    many_units(tmp_path, count, 64 * KB)
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "shutdown",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "max_concurrency": 1,
    }
    # Short grace periods: the first worker stops the upload as soon as it is asked to.
    async with upload_worker(settings, shutdown_grace_s=0.2, cancel_grace_s=5.0):
        request = await own_uploads.submit("upload", params, tenant=tenant)

        await wait_uploaded(own_uploads, request.run_id, 10 / 120)
    assert own_uploads.terminal(request.run_id) == []  # stopped for redelivery, not ended

    def kept_log() -> bool:
        # Published as the worker stops: it may reach this client a poll later.
        return any(
            e.type == "run.log"
            and "keeping what was written for the next attempt" in e.payload.message  # type: ignore[attr-defined]
            for e in own_uploads.events[request.run_id]
        )

    await eventually(kept_log, timeout=10, message="no log about keeping the work")
    kept = await objects(settings, f"{tenant}/{collection}/{request.run_id}")
    assert kept, "the first attempt's objects were rolled back"
    async with upload_worker(settings):
        terminal = await own_uploads.wait_terminal(request.run_id, timeout=120)
    assert terminal.type == "run.succeeded", terminal
    assert terminal.attempt == 2
    result = terminal.payload.result  # type: ignore[attr-defined]
    assert result["data_files"]["already_uploaded"] >= len(kept) - 1  # one may have been partial
    assert len(await units_of(pool, request.run_id)) == count
    assert len(await objects(settings, f"{tenant}/{collection}/{request.run_id}")) == 2 * count


async def test_a_re_executed_run_that_fails_early_removes_what_attempt_1_stored(
    settings: Settings, pool: asyncpg.Pool, own_uploads: RunClient, tenant: str, tmp_path: Path
) -> None:
    # Enough files that the upload is still going when the stop lands (60 could all be sent,
    # and their units generated, within the shutdown's grace on a fast moto).
    count = 300
    many_units(tmp_path, count, 16 * KB)
    excel(tmp_path / "meta.xlsx", [["file", "weather"], ["u000", "sunny"]])
    storage = await make_storage(pool, tenant, tmp_path)
    collection = await make_collection(pool, tenant)
    params = {
        "name": "fails early",
        "storage": str(storage),
        "data_collection": str(collection),
        "path": "ds",
        "excel_metadata_path": "meta.xlsx",
        "max_concurrency": 1,
    }
    # Attempt 1 stores objects, then stops for a worker shutdown (keeping them for attempt 2).
    async with upload_worker(settings, shutdown_grace_s=0.2, cancel_grace_s=5.0):
        request = await own_uploads.submit("upload", params, tenant=tenant)

        await wait_uploaded(own_uploads, request.run_id, 10 / (2 * count))
    assert own_uploads.terminal(request.run_id) == []
    prefix = f"{tenant}/{collection}/{request.run_id}"
    kept = await objects(settings, prefix)
    assert kept, "the first attempt's objects were rolled back"
    # Units attempt 1 could have stored had it stopped later, in generate_data_units.
    image, label = sorted(kept)[:2]
    files: dict[str, repository.DataFile] = {
        spec: {
            "uri": f"s3://{settings.s3_bucket}/{key}",
            "size": 1,
            "checksum": None,
            "media_type": None,
        }
        for spec, key in (("image", image), ("label", label))
    }
    async with pool.acquire() as conn:
        await repository.upsert_data_units(
            conn, tenant, collection, request.run_id, [repository.NewDataUnit("u000", files)]
        )
    assert set(await units_of(pool, request.run_id)) == {"u000"}

    # Attempt 2 fails in process_metadata, before the steps that write.
    (tmp_path / "meta.xlsx").unlink()
    async with upload_worker(settings):
        terminal = await own_uploads.wait_terminal(request.run_id, timeout=60)
    assert terminal.type == "run.failed", terminal
    assert terminal.attempt == 2
    assert "Excel metadata not found" in terminal.payload.message  # type: ignore[attr-defined]
    assert await objects(settings, prefix) == {}
    assert await units_of(pool, request.run_id) == {}
