"""Run latency of a published plugin version against the same plugin on the worker's plugin path.

Both sides run the same small `job` action (it reports one progress step and returns) on one
export service started as in production (`python -m runmesh.export`, on a sandbox: Tansu,
PostgreSQL, moto S3), one run at a time, timed from the request's produce to its terminal
event on `runmesh.events`.

Value (published): the plugin as a tenant publishes it: its archive in the platform bucket
and its manifest announced on `runmesh.plugins`, exactly as `POST /v1/plugins` stores and
announces them. The first run installs it (download, checksum, unpack, `uv venv`) and starts
the version's job fork server (its interpreter importing runmesh once): measured and printed
as `first_run_s`, not in the value. Every timed run forks its job from that server.

Baseline (plugin path): the same code under another code, on `RUNMESH_PLUGIN_PATH`: its job
is forked from the worker's preloaded job server.

After one untimed warm-up run of each side, `--runs` rounds each time one run of each side;
medians are compared. Ratio = published / plugin path: what a published version costs per
run (its own modules imported by each job; the worker's server has the plugin-path plugin's
base modules imported already).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from support.published import publish  # bench/support, on the script's path

from runmesh.core.events import RunRequest, encode
from runmesh.core.kafka import consumer_config, ensure_topics, make_producer
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.sandbox import Sandbox

CATEGORY = "export"
TENANT = "bench"
ACTION = '''\
"""A job that reports one step and returns: what is left is the runtime's own cost."""

from pydantic import BaseModel

from runmesh.plugins import Action


class Params(BaseModel):
    """No params."""


class Ping(Action):
    """Returns at once."""

    params_model = Params
    progress_categories = {"ping": "Ping"}

    def start(self) -> dict:
        self.run.set_progress(1, 1, category="ping")
        return {"pong": True}
'''


def write_plugin(directory: Path, code: str) -> Path:
    (directory / "plugin").mkdir(parents=True)
    (directory / "plugin" / "__init__.py").write_text("")
    (directory / "plugin" / "ping.py").write_text(ACTION)
    (directory / "config.yaml").write_text(
        f"code: {code}\nname: Ping\nversion: '1.0.0'\ncategory: {CATEGORY}\n"
        "actions:\n  ping:\n    entrypoint: plugin.ping.Ping\n    method: job\n"
    )
    return directory


class Timer:
    """Produces one request at a time and waits for its terminal event."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.producer = make_producer(settings.kafka)
        config = consumer_config(settings.kafka, group_id=None)
        self.reader = AIOKafkaConsumer(self.topics.events, **config)
        self.ended: dict[str, asyncio.Future[str]] = {}

    async def start(self) -> None:
        await self.producer.start()
        await self.reader.start()
        for tp in self.reader.assignment():
            await self.reader.position(tp)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.reader.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        terminal = {b"run.succeeded", b"run.failed", b"run.cancelled"}
        while True:
            batches = await self.reader.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    kind = dict(record.headers).get("event-type")
                    key = (record.key or b"").decode()
                    if kind in terminal and key in self.ended and not self.ended[key].done():
                        self.ended[key].set_result(kind.decode())

    async def run(self, plugin: str) -> float:
        request = RunRequest(category=CATEGORY, action="ping", plugin=plugin, tenant=TENANT)
        done = self.ended[str(request.run_id)] = asyncio.get_running_loop().create_future()
        began = time.perf_counter()
        await self.producer.send_and_wait(
            self.topics.requests(CATEGORY), encode(request), key=str(request.run_id).encode()
        )
        state = await asyncio.wait_for(done, 600)
        elapsed = time.perf_counter() - began
        if state != "run.succeeded":
            raise SystemExit(f"{plugin}: run {request.run_id} ended {state}")
        return elapsed


async def main(runs: int) -> dict[str, object]:
    async with Sandbox(Settings()) as sandbox:
        work = Path(tempfile.mkdtemp(prefix="runmesh-bench-"))
        settings = sandbox.settings.model_copy(
            update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}", "plugin_cache_dir": work / "cache"}
        )
        topics = Topics(settings.topic_prefix)
        await ensure_topics(
            settings.kafka,
            [topics.requests(CATEGORY), topics.events, topics.plugins, topics.control],
        )
        local = write_plugin(work / "local" / "ping-local", "ping-local")
        published = await publish(
            settings, write_plugin(work / "published", "ping-published"), TENANT
        )
        env = {**os.environ, **settings.to_env(), "RUNMESH_PLUGIN_PATH": str(local.parent)}
        log = (work / "worker.log").open("wb")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runmesh.export", env=env, stdout=log, stderr=log
        )
        timer = Timer(settings)
        await timer.start()
        try:
            await asyncio.sleep(1)
            baseline_warmup = await timer.run("ping-local@1.0.0")
            first_run = await timer.run(published)
            published_runs: list[float] = []
            local_runs: list[float] = []
            for _ in range(runs):
                published_runs.append(await timer.run(published))
                local_runs.append(await timer.run("ping-local@1.0.0"))
        finally:
            await timer.stop()
            worker.terminate()
            await worker.wait()
            log.close()
    value, baseline = statistics.median(published_runs), statistics.median(local_runs)
    print(
        f"published runs {[round(x, 3) for x in published_runs]}, "
        f"plugin path runs {[round(x, 3) for x in local_runs]}",
        file=sys.stderr,
    )
    return {
        "bench": "published_plugin_start",
        "value": round(value, 4),
        "unit": "s per run",
        "baseline": round(baseline, 4),
        "ratio": round(value / baseline, 3),
        "first_run_s": round(first_run, 3),
        "baseline_first_run_s": round(baseline_warmup, 3),
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    print(json.dumps(asyncio.run(main(parser.parse_args().runs))))
