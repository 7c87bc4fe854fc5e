"""Train overhead: one seeded training through the mesh, against the same training in-process.

Data: one seeded synthetic COCO dataset (`--images` images of `--size` px, coloured shapes of
three classes, as tests/test_train.py draws them) written to the platform bucket of a sandbox
(Tansu, PostgreSQL, moto S3).

Value (mesh): the built-in `train` action (category `neural_net`) submitted through an
in-process gateway (`POST /v1/runs` with a tenant token) to the train service run as in
production, `python -m runmesh.train` (the action is a `job`: a child forked from the
worker's job server), timed from the POST until `GET /v1/runs/{id}` answers `succeeded`
(polled every 10 ms once the run's terminal event is on Kafka; polling all along would
load the gateway more than the run's events do). That includes the request's validation
and outbox, Kafka, the attempt ledger, the job's start (catalog pool and migrations, the
name check), loading the dataset from S3, preparing and training, the per-epoch metric
events, evaluating the validation boxes, writing the model to S3, registering it in
PostgreSQL, the terminal event and the gateway's aggregation of it. `--in-process-worker`
runs the worker in this process instead (as tests/conftest.py does); its job children then
import this script as their `__mp_main__` (uvicorn, httpx, the gateway...), which adds
seconds to every job start that production, whose main module is `runmesh.train.__main__`,
does not pay.

Baseline (direct): the library calls only, on the same data and seed: `load_dataset` from
the same S3 URI (so both sides list, read and decode the same files), `prepare`,
`new_detector`, `train_epochs`, `Detector.to_bytes` and one S3 write of the model, timed
inside a process of their own: one spawned pool worker, warmed up once and reused for every
direct run (its imports are done before the clock starts, as this bench's are). Not in this
process: here the gateway's and the event reader's loops share the GIL with the training
thread, which then waits for the GIL after every numpy call (the OpenBLAS threads spinning
meanwhile), and epochs measured up to twice as slow as in a process of their own;
`--direct-in-bench-process` measures it that way.

Checkpoints: the action checkpoints to S3 every `checkpoint_interval` epochs (default 1) and
the direct side writes none. The headline compares the same work: the mesh runs with
`checkpoint_interval` = epochs (no intermediate checkpoint; the final model is written on both
sides). The default (a checkpoint after every epoch) is measured too, in the same rounds, and
printed as `mesh_default_checkpoints_s` (skip it with `--no-checkpoint-variant`).

After one untimed 1-epoch warm-up of each side (imports, the job server, the gateway learning
the plugin's schema), `--runs` rounds (3) each run direct, then mesh (then the checkpointed
mesh); medians are reported. Every model must equal the first direct one (`network.state()`
arrays, `numpy.array_equal`). `phases_s` splits the median runs: the mesh's from its run
events' timestamps (run.started, TRAIN_STARTED, DATASET_LOADED, the train metrics of epoch 1
and of the last epoch, the `model` artifact, run.succeeded), the direct run's from its own
clock at the same points. `*_cpu_s` and `cpu_by_process_s`: CPU seconds of every process
of the bench (this one, the direct process, the sandbox's, the worker and its jobs) during a
run; wall times on a small shared machine vary with other load, CPU seconds much less.
Ratio = mesh / direct (aim: <= 1.10).

On 2 cores OpenBLAS's default of one thread per core makes both sides' epochs hostage to any
other runnable process (its threads meet at a barrier after every matrix product): the
run's own event traffic on the mesh side, anything else on the machine on both. With
`OPENBLAS_NUM_THREADS=1` in the environment (the worker, its jobs and the direct process
inherit it) epochs are faster for this small network and the numbers far steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from aiokafka import AIOKafkaConsumer

from runmesh.core.db import create_pool
from runmesh.core.events import (
    TERMINAL_EVENT_TYPES,
    RunArtifact,
    RunEvent,
    RunLog,
    RunMetric,
    decode_event,
)
from runmesh.core.kafka import consumer_config, ensure_topics, pin_to_latest
from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.core.topics import Topics
from runmesh.gateway.app import create_app
from runmesh.gateway.tokens import create_token
from runmesh.sandbox import Sandbox
from runmesh.sandbox.processes import free_port
from runmesh.storage import TenantUris, platform_storage
from runmesh.train import BUILTIN_PLUGIN
from runmesh.train.dataset import load_dataset
from runmesh.train.model import Detector, coco_files, synthetic_images
from runmesh.train.params import DatasetRef, Hyperparameters
from runmesh.train.trainer import EpochReport, new_detector, prepare, train_epochs
from runmesh.worker import Worker, build_registry
from runmesh.worker.worker import READY_MARKER

CATEGORY = "neural_net"
CLASSES = ["red_square", "green_circle", "blue_triangle"]
TENANT = "bench-train"
SEED = 7
DATASET_SEED = 11
VALIDATION_SPLIT = 0.25
LEARNING_RATE = 0.003
NEGATIVES_PER_IMAGE = 6
POLL_S = 0.01  # GET /v1/runs/{id}, from the run's terminal event on
RUN_TIMEOUT_S = 600.0
AIM = 1.10


def log(message: str) -> None:
    print(message, flush=True)


# Which part of the bench a process is, by its command line (the first match wins); a process
# that matches none is its parent's part (a PostgreSQL backend, a job forked by the server).
_PARTS = (
    (b"tansu", "kafka"),
    (b"postgres", "postgres"),
    (b"moto", "s3"),
    (b"forkserver", "jobs"),
    (b"multiprocessing.spawn", "direct"),
    (b"runmesh.train", "worker"),
)


def tree_cpu_s(roots: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds (user + system) so far of every process of the bench, by part: this one
    ("bench": the gateway, the event reader, the direct side), the processes whose command
    line names one of `roots` (the sandbox's directory: PostgreSQL detaches from us) and all
    their descendants, reaped ones included (a parent's cutime/cstime: the worker's jobs are
    reaped by its fork server). Empty where there is no /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, int] = {}
    names: dict[int, bytes] = {}
    starts = [os.getpid()]
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        children[int(fields[1])].append(pid)
        cpu[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        names[pid] = cmdline
        if any(root.encode() in cmdline for root in roots):
            starts.append(pid)
    parts: dict[str, float] = defaultdict(float)
    seen: set[int] = set()
    stack = [(pid, "bench" if pid == os.getpid() else "other") for pid in starts]
    while stack:
        pid, inherited = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        part = next((p for key, p in _PARTS if key in names.get(pid, b"")), inherited)
        if pid == os.getpid():
            part = "bench"
        parts[part] += cpu.get(pid, 0) / ticks
        stack.extend((child, part) for child in children[pid])
    return dict(parts)


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per part between two `tree_cpu_s` readings, and their "total"."""
    spent = {part: after[part] - before.get(part, 0.0) for part in sorted(after)}
    return spent | {"total": sum(spent.values())}


@dataclass(slots=True)
class Config:
    images: int
    size: int
    epochs: int
    hidden_units: int
    batch_size: int
    runs: int
    checkpoint_variant: bool
    in_process_worker: bool
    direct_here: bool

    def hyper(self, epochs: int | None = None) -> dict[str, Any]:
        return {
            "epochs": epochs or self.epochs,
            "hidden_units": self.hidden_units,
            "batch_size": self.batch_size,
            "learning_rate": LEARNING_RATE,
            "negatives_per_image": NEGATIVES_PER_IMAGE,
        }


@dataclass(slots=True)
class Measured:
    """One timed run: its seconds, its phases' seconds and the model it made."""

    seconds: float
    phases: dict[str, float]
    model: bytes
    epoch_s: float  # mean seconds of epochs 2..N
    extra: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by part, and "total"


# -- the dataset -----------------------------------------------------------------------------


async def write_dataset(settings: Settings, count: int, size: int) -> str:
    """A seeded COCO folder (annotations.json + images/) in the tenant's folder of the platform
    bucket (where its runs may read); its URI."""
    prefix = f"{TENANT}/datasets/train-bench-{uuid.uuid4().hex[:10]}"
    images = synthetic_images(count, seed=DATASET_SEED, size=size, classes=CLASSES)
    async with platform_storage(settings.s3) as storage:
        for path, data in coco_files(images, CLASSES):
            await storage.write_bytes(f"{prefix}/{path}", data)
    return f"s3://{settings.s3_bucket}/{prefix}"


# -- direct ----------------------------------------------------------------------------------


async def _direct_calls(
    settings: Settings, uri: str, hyper_values: dict[str, Any]
) -> tuple[float, dict[str, float], bytes, float]:
    """The library calls: load from S3, prepare, train, serialize, write; (seconds, phases,
    model, mean seconds of epochs 2..N). The pool is made before the clock starts (a folder
    dataset does not use it; `load_dataset` takes one)."""
    hyper = Hyperparameters.model_validate(hyper_values)
    epoch_ends: list[float] = []

    def on_epoch(_report: EpochReport, _detector: Detector) -> None:
        epoch_ends.append(time.perf_counter())

    pool = await create_pool(settings.database, min_size=1, max_size=1)
    try:
        began = time.perf_counter()
        uris = TenantUris(TENANT, [], settings.storage)
        try:
            dataset = await load_dataset(
                DatasetRef(uri=uri),
                tenant=TENANT,
                settings=settings,
                pool=pool,
                uris=uris,
                progress=lambda _done, _total: None,
            )
        finally:
            await uris.close()
        loaded = time.perf_counter()
        classes = dataset.classes
        prepared = await asyncio.to_thread(
            prepare, dataset.samples, classes, hyper, validation_split=VALIDATION_SPLIT, seed=SEED
        )
        detector = await asyncio.to_thread(new_detector, prepared, classes, hyper, SEED)
        await asyncio.to_thread(
            train_epochs, detector, prepared, hyper, seed=SEED, first_epoch=1, on_epoch=on_epoch
        )
        data = await asyncio.to_thread(detector.to_bytes)
        async with platform_storage(settings.s3) as storage:
            await storage.write_bytes(f"bench/direct/{uuid.uuid4().hex}/model.npz", data)
        ended = time.perf_counter()
    finally:
        await pool.close()
    phases = {
        "load": loaded - began,
        "prepare_and_epoch_1": epoch_ends[0] - loaded,
        "epochs_2_to_n": epoch_ends[-1] - epoch_ends[0],
        "model_write": ended - epoch_ends[-1],
    }
    return ended - began, phases, data, _mean_epoch(epoch_ends)


def direct_process_run(
    settings: Settings, uri: str, hyper_values: dict[str, Any]
) -> tuple[float, dict[str, float], bytes, float]:
    """One direct run in the direct process (a spawned pool worker, reused run after run)."""
    return asyncio.run(_direct_calls(settings, uri, hyper_values))


async def direct_run(
    executor: ProcessPoolExecutor | None,
    settings: Settings,
    uri: str,
    hyper_values: dict[str, Any],
    roots: tuple[str, ...] = (),
) -> Measured:
    """The library calls in the direct process, or in this one without an executor."""
    cpu_before = tree_cpu_s(roots)
    if executor is None:
        outcome = await _direct_calls(settings, uri, hyper_values)
    else:
        outcome = await asyncio.get_running_loop().run_in_executor(
            executor, direct_process_run, settings, uri, hyper_values
        )
    cpu = cpu_spent(cpu_before, tree_cpu_s(roots))
    seconds, phases, data, epoch_s = outcome
    return Measured(seconds, phases, data, epoch_s, cpu=cpu)


def _mean_epoch(ends: list[float]) -> float:
    return (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else 0.0


# -- the mesh --------------------------------------------------------------------------------


class EventLog:
    """Every run event of the events topic, by run, with a wake-up per arrival."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics(settings.topic_prefix)
        self.events: dict[uuid.UUID, list[RunEvent]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        self._consumer = AIOKafkaConsumer(
            self.topics.events, **consumer_config(settings.kafka, group_id=None)
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await pin_to_latest(self._consumer, timeout_s=30)
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _collect(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            for records in batches.values():
                for record in records:
                    event = decode_event(record.value or b"")
                    self.events[event.run_id].append(event)
            async with self._arrived:
                self._arrived.notify_all()

    async def terminal(self, run_id: uuid.UUID, timeout: float) -> RunEvent:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for event in self.events[run_id]:
                    if event.type in TERMINAL_EVENT_TYPES:
                        return event
                await self._arrived.wait()


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """The gateway app served by uvicorn in this process: (base URL, app)."""
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=60, message="gateway")
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        async with asyncio.timeout(60):
            await task


@contextlib.asynccontextmanager
async def train_worker(settings: Settings, workdir: Path, in_process: bool) -> AsyncIterator[None]:
    """The train service: `python -m runmesh.train` in a process of its own (default), or
    built the same way in this process (`--in-process-worker`)."""
    if in_process:
        registry = build_registry(settings, [BUILTIN_PLUGIN])
        worker = Worker(CATEGORY, registry, settings, service="train")
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(120):
            await worker.ready.wait()
        try:
            yield
        finally:
            worker.request_stop()
            async with asyncio.timeout(120):
                await task
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    env.update(settings.to_env())
    log_path = workdir / "train-worker.log"
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runmesh.train", env=env, stdout=out, stderr=out
        )
    try:

        def serving() -> bool:
            if process.returncode is not None:
                raise RuntimeError(f"the train worker exited: {log_path.read_text()[-3000:]}")
            return READY_MARKER in log_path.read_text(errors="replace")

        await eventually(serving, timeout=120, interval=0.1, message="train worker never ready")
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def train_params(uri: str, hyper: dict[str, Any], checkpoint_interval: int) -> dict[str, Any]:
    return {
        "name": f"bench-{uuid.uuid4().hex[:12]}",
        "dataset": {"uri": uri},
        "hyperparameters": hyper,
        "validation_split": VALIDATION_SPLIT,
        "checkpoint_interval": checkpoint_interval,
        "seed": SEED,
    }


async def submit(http: httpx.AsyncClient, params: dict[str, Any]) -> tuple[uuid.UUID, float]:
    """POST the train run; (run id, wall time just before the POST)."""
    began = time.time()
    response = await http.post(
        "/v1/runs", json={"category": CATEGORY, "action": "train", "params": params}
    )
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/runs: {response.status_code} {response.text[:500]}")
    return uuid.UUID(response.json()["id"]), began


async def wait_succeeded(http: httpx.AsyncClient, run_id: uuid.UUID) -> dict[str, Any]:
    """Poll the gateway until the run ended; its view once succeeded."""
    async with asyncio.timeout(RUN_TIMEOUT_S):
        while True:
            response = await http.get(f"/v1/runs/{run_id}")
            response.raise_for_status()
            run: dict[str, Any] = response.json()
            if run["state"] == "succeeded":
                return run
            if run["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"run {run_id} {run['state']}: {run.get('error')}")
            await asyncio.sleep(POLL_S)


async def mesh_run(
    http: httpx.AsyncClient,
    events: EventLog,
    settings: Settings,
    uri: str,
    hyper: dict[str, Any],
    checkpoint_interval: int,
    roots: tuple[str, ...] = (),
) -> Measured:
    params = train_params(uri, hyper, checkpoint_interval)
    cpu_before = tree_cpu_s(roots)
    run_id, began = await submit(http, params)
    # The terminal event from Kafka first (pushed to us), then the gateway's view: polling
    # the gateway all along would cost its process more CPU than the run's events do.
    terminal = await events.terminal(run_id, timeout=RUN_TIMEOUT_S)
    if terminal.type != "run.succeeded":
        raise RuntimeError(f"run {run_id} ended {terminal.type}: {terminal.payload}")
    run = await wait_succeeded(http, run_id)
    ended = time.time()
    cpu = cpu_spent(cpu_before, tree_cpu_s(roots))  # the job has exited (and been reaped) by now
    async with platform_storage(settings.s3) as storage:
        path = run["result"]["artifact_uri"].removeprefix(f"s3://{settings.s3_bucket}/")
        model = await storage.read_bytes(path, max_bytes=1 << 30)
    phases, epoch_s, extra = mesh_phases(events.events[run_id], began, ended, hyper["epochs"])
    extra["terminal_event_s"] = terminal.ts.timestamp() - began
    return Measured(ended - began, phases, model, epoch_s, extra, cpu)


def mesh_phases(
    events: list[RunEvent], began: float, ended: float, epochs: int
) -> tuple[dict[str, float], float, dict[str, float]]:
    """The run's phases from its events' timestamps (set by the worker as it publishes)."""
    at: dict[str, float] = {}
    epoch_ts: dict[int, float] = {}
    checkpoints = 0
    for event in events:
        ts = event.ts.timestamp()
        if event.type == "run.started":
            at.setdefault("started", ts)
        elif isinstance(event, RunLog) and event.payload.code:
            at.setdefault(event.payload.code, ts)
        elif isinstance(event, RunMetric) and event.payload.category == "train":
            if event.payload.step is not None:
                epoch_ts[event.payload.step] = ts
        elif isinstance(event, RunArtifact):
            if event.payload.name == "model":
                at["model"] = ts
            else:
                checkpoints += 1
        elif event.type == "run.succeeded":
            at["succeeded"] = ts
    first, last = epoch_ts[1], epoch_ts[epochs]
    phases = {
        "submit_to_started": at["started"] - began,
        "job_start": at["TRAIN_STARTED"] - at["started"],
        "load": at["DATASET_LOADED"] - at["TRAIN_STARTED"],
        "prepare_and_epoch_1": first - at["DATASET_LOADED"],
        "epochs_2_to_n": last - first,
        "evaluate_and_model_write": at["model"] - last,
        "register_and_finish": at["succeeded"] - at["model"],
        "gateway_sees_succeeded": ended - at["succeeded"],
    }
    epoch_s = (last - first) / (epochs - 1) if epochs > 1 else 0.0
    return phases, epoch_s, {"checkpoints": float(checkpoints), "events": float(len(events))}


async def wait_plugin_known(http: httpx.AsyncClient, uri: str, hyper: dict[str, Any]) -> None:
    """The first run (the warm-up): 422 until the gateway has the plugin's manifest."""

    async def accepted() -> uuid.UUID | None:
        response = await http.post(
            "/v1/runs",
            json={
                "category": CATEGORY,
                "action": "train",
                "params": train_params(uri, hyper, 1),
            },
        )
        if response.status_code == 202:
            return uuid.UUID(response.json()["id"])
        if response.status_code != 422:
            raise RuntimeError(f"POST /v1/runs: {response.status_code} {response.text[:500]}")
        return None

    run_id = await eventually(accepted, timeout=60, interval=0.2, message="plugin never known")
    if run_id is None:  # eventually returns a truthy value or raises
        raise RuntimeError("the warm-up run was never accepted")
    await wait_succeeded(http, run_id)


# -- comparison and report -------------------------------------------------------------------


def same_model(a: bytes, b: bytes) -> bool:
    left = Detector.from_bytes(a).network.state()
    right = Detector.from_bytes(b).network.state()
    return left.keys() == right.keys() and all(
        np.array_equal(np.asarray(left[key]), np.asarray(right[key])) for key in left
    )


def median_run(runs: list[Measured]) -> Measured:
    ordered = sorted(runs, key=lambda run: run.seconds)
    return ordered[len(ordered) // 2]


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 3) for key, value in values.items()}


def describe(label: str, run: Measured) -> str:
    parts = ", ".join(f"{k} {v:.2f}" for k, v in run.phases.items())
    return f"  {label}: {run.seconds:.2f}s ({parts}; {run.epoch_s * 1000:.1f} ms/epoch)"


def cpu_total(run: Measured) -> float:
    return run.cpu.get("total", 0.0)


def cpu_median(runs: list[Measured]) -> float:
    return statistics.median(cpu_total(run) for run in runs)


def cpu_parts(runs: list[Measured]) -> dict[str, float]:
    """Median CPU seconds of each part of the bench over `runs`."""
    parts = sorted({part for run in runs for part in run.cpu})
    return {
        part: round(statistics.median(run.cpu.get(part, 0.0) for run in runs), 3) for part in parts
    }


def cpu_line(label: str, runs: list[Measured]) -> str:
    parts = ", ".join(f"{part} {value:.2f}" for part, value in cpu_parts(runs).items())
    return f"  CPU s by process, median, {label}: {parts}"


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden-units", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side")
    parser.add_argument(
        "--in-process-worker",
        action="store_true",
        help="run the train worker in this process (its jobs then import this script as "
        "their __mp_main__) instead of as `python -m runmesh.train`",
    )
    parser.add_argument(
        "--direct-in-bench-process",
        action="store_true",
        help="run the direct side in this process, beside the gateway and the event reader, "
        "instead of in a spawned process of its own",
    )
    parser.add_argument(
        "--no-checkpoint-variant",
        action="store_true",
        help="skip the mesh runs with the default checkpoint after every epoch",
    )
    args = parser.parse_args()
    return Config(
        args.images,
        args.size,
        args.epochs,
        args.hidden_units,
        args.batch_size,
        args.runs,
        not args.no_checkpoint_variant,
        args.in_process_worker,
        args.direct_in_bench_process,
    )


async def main() -> None:
    config = parse_args()
    log(
        f"train overhead: {config.images} images of {config.size} px, epochs {config.epochs}, "
        f"hidden_units {config.hidden_units}, batch_size {config.batch_size}, seed {SEED}; "
        f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    with tempfile.TemporaryDirectory(prefix="train-bench-") as workdir:
        direct, mesh, checkpointed = await measure(config, Path(workdir))
    report(config, direct, mesh, checkpointed)


async def measure(
    config: Config, workdir: Path
) -> tuple[list[Measured], list[Measured], list[Measured]]:
    """Start the sandbox, gateway and worker; (direct runs, mesh runs, checkpointed runs)."""
    hyper = config.hyper()
    async with Sandbox(Settings()) as sandbox:
        settings = sandbox.settings.model_copy(
            update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}", "tenant": TENANT}
        )
        topics = Topics(settings.topic_prefix)
        await ensure_topics(
            settings.kafka,
            [topics.requests(CATEGORY), topics.events, topics.control, topics.plugins],
        )
        roots = (str(sandbox.directory),) if sandbox.directory is not None else ()
        uri = await write_dataset(settings, config.images, config.size)
        log(f"dataset: {uri}")
        events = EventLog(settings)
        await events.start()
        executor = None
        if not config.direct_here:
            context = multiprocessing.get_context("spawn")
            executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            async with (
                gateway(settings) as (url, app),
                train_worker(settings, workdir, config.in_process_worker),
            ):
                token = await create_token(app.state.deps.pool, TENANT, "bench")
                async with httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                ) as http:
                    warm = config.hyper(epochs=1)
                    await direct_run(executor, settings, uri, warm)
                    await wait_plugin_known(http, uri, warm)
                    log("warmed up (one 1-epoch run of each side)")
                    direct: list[Measured] = []
                    mesh: list[Measured] = []
                    checkpointed: list[Measured] = []
                    for index in range(config.runs):  # rounds: direct, mesh (, checkpointed)
                        run = await direct_run(executor, settings, uri, hyper, roots)
                        direct.append(run)
                        log(f"direct {index + 1}: {run.seconds:.2f}s, CPU {cpu_total(run):.2f}s")
                        run = await mesh_run(
                            http, events, settings, uri, hyper, config.epochs, roots
                        )
                        mesh.append(run)
                        log(f"mesh   {index + 1}: {run.seconds:.2f}s, CPU {cpu_total(run):.2f}s")
                        if config.checkpoint_variant:
                            run = await mesh_run(http, events, settings, uri, hyper, 1, roots)
                            checkpointed.append(run)
                            log(
                                f"mesh, checkpoint every epoch {index + 1}: {run.seconds:.2f}s, "
                                f"CPU {cpu_total(run):.2f}s "
                                f"({run.extra['checkpoints']:.0f} checkpoints)"
                            )
        finally:
            await events.stop()
            if executor is not None:
                await asyncio.to_thread(executor.shutdown)
    return direct, mesh, checkpointed


def report(
    config: Config, direct: list[Measured], mesh: list[Measured], checkpointed: list[Measured]
) -> None:
    reference = direct[0].model
    matches = all(same_model(reference, run.model) for run in [*direct, *mesh, *checkpointed])
    direct_s = statistics.median(run.seconds for run in direct)
    mesh_s = statistics.median(run.seconds for run in mesh)
    ratio = mesh_s / direct_s
    mid_direct, mid_mesh = median_run(direct), median_run(mesh)
    log(f"direct (the library calls, dataset loaded from S3): median {direct_s:.2f}s")
    log(describe("median direct", mid_direct))
    log(f"mesh (gateway POST -> GET succeeded, no intermediate checkpoint): median {mesh_s:.2f}s")
    log(describe("median mesh", mid_mesh))
    log(
        f"  terminal event after {mid_mesh.extra['terminal_event_s']:.2f}s, "
        f"{mid_mesh.extra['events']:.0f} run events; mesh - direct = {mesh_s - direct_s:.2f}s"
    )
    log(
        f"best runs: direct {min(r.seconds for r in direct):.2f}s, "
        f"mesh {min(r.seconds for r in mesh):.2f}s"
    )
    log(cpu_line("direct", direct))
    log(cpu_line("mesh", mesh))
    result: dict[str, Any] = {
        "bench": "train_overhead",
        "value": round(mesh_s, 3),
        "unit": "s",
        "baseline": round(direct_s, 3),
        "ratio": round(ratio, 3),
        "epochs": config.epochs,
        "images": config.images,
        "runs": config.runs,
        "image_px": config.size,
        "hidden_units": config.hidden_units,
        "batch_size": config.batch_size,
        "models_equal": matches,
        "worker": "in-process Worker" if config.in_process_worker else "python -m runmesh.train",
        "direct_in": "this process" if config.direct_here else "a spawned process of its own",
        "aim_ratio": AIM,
        "ratio_ok": ratio <= AIM,
        "mesh_runs_s": [round(run.seconds, 3) for run in mesh],
        "direct_runs_s": [round(run.seconds, 3) for run in direct],
        "mesh_cpu_s": round(cpu_median(mesh), 3),
        "direct_cpu_s": round(cpu_median(direct), 3),
        "cpu_by_process_s": {"mesh": cpu_parts(mesh), "direct": cpu_parts(direct)},
        "mesh_run_events": int(mid_mesh.extra["events"]),
        "mesh_epoch_ms": round(mid_mesh.epoch_s * 1000, 2),
        "direct_epoch_ms": round(mid_direct.epoch_s * 1000, 2),
        "phases_s": {"mesh": rounded(mid_mesh.phases), "direct": rounded(mid_direct.phases)},
        "baseline_desc": "load_dataset (same S3 URI) + prepare + new_detector + train_epochs + "
        "Detector.to_bytes + one S3 write, called directly in one warm process; mesh with "
        "checkpoint_interval=epochs",
    }
    if checkpointed:
        checkpointed_s = statistics.median(run.seconds for run in checkpointed)
        mid = median_run(checkpointed)
        log(f"mesh with the default checkpoint every epoch: median {checkpointed_s:.2f}s")
        log(describe("median mesh, checkpoints", mid))
        log(cpu_line("mesh, checkpoints", checkpointed))
        result["mesh_default_checkpoints_s"] = round(checkpointed_s, 3)
        result["mesh_default_checkpoints_runs_s"] = [round(r.seconds, 3) for r in checkpointed]
        result["mesh_default_checkpoints_cpu_s"] = round(cpu_median(checkpointed), 3)
        result["cpu_by_process_default_checkpoints_s"] = cpu_parts(checkpointed)
        result["ratio_default_checkpoints"] = round(checkpointed_s / direct_s, 3)
        result["phases_default_checkpoints_s"] = rounded(mid.phases)
    log(f"models equal (network.state(), numpy.array_equal): {matches}")
    log(f"ratio mesh/direct: {ratio:.3f} (aim <= {AIM})")
    print(json.dumps(result), flush=True)
    if not matches:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
