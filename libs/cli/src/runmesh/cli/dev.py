"""`runmesh dev`: run the embedded sandbox (and, later, the platform on it) until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from runmesh.cli.commands.token import create as create_token_for
from runmesh.cli.demo import run_demo
from runmesh.cli.dev_info import DevInfo, dev_info_path, remove_dev_info, write_dev_info
from runmesh.cli.services import service_specs, start_service
from runmesh.cli.supervision import Supervision
from runmesh.core.settings import Settings
from runmesh.sandbox import Sandbox
from runmesh.sandbox.processes import ChildProcess, free_port

BANNER = "runmesh sandbox (ephemeral: data is lost on exit)"
DEV_TENANT = "default"  # runs produced straight to Kafka belong to it too (RUNMESH_TENANT)


async def _publish_dev_info(settings: Settings) -> DevInfo:
    """Create the dev token and write dev.json, which the other commands read."""
    token = await create_token_for(settings, DEV_TENANT, "runmesh dev")
    info = DevInfo(
        gateway_url=f"http://{settings.gateway_host}:{settings.gateway_port}",
        token=token,
        kafka_bootstrap=settings.kafka_bootstrap or "",
        database_url=settings.database_url or "",
        s3_endpoint_url=settings.s3_endpoint_url or "",
        s3_bucket=settings.s3_bucket,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=(
            settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key is not None
            else None
        ),
        topic_prefix=settings.topic_prefix,
        pid=os.getpid(),
    )
    write_dev_info(settings, info)
    return info


def describe(
    sandbox: Sandbox, services: Sequence[str] = (), info: DevInfo | None = None
) -> list[str]:
    """The lines `runmesh dev` prints: what runs, and the variables that reach it."""
    settings = sandbox.settings
    lines = [BANNER, ""]
    if info is not None:
        lines += [
            f"  Gateway:  {info.gateway_url}   (API docs: {info.gateway_url}/docs)",
            f"  Token:    {info.token}   (tenant {DEV_TENANT})",
            f"  Written to {dev_info_path(settings)}: other `runmesh` commands use it.",
            "",
        ]
    parts: dict[str, object] = {
        "kafka": sandbox.broker,
        "postgres": sandbox.postgres,
        "s3": sandbox.s3,
    }
    external = [name for name, part in parts.items() if part is None]
    if external:
        lines += [f"  external (from RUNMESH_* settings): {', '.join(external)}", ""]
    lines += [
        "  To reach it from another shell:",
        f"    export RUNMESH_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}",
        f"    export RUNMESH_DATABASE_URL={settings.database_url}",
        f"    export RUNMESH_S3_ENDPOINT_URL={settings.s3_endpoint_url}",
        f"    export RUNMESH_S3_BUCKET={settings.s3_bucket}",
    ]
    if sandbox.s3 is not None and settings.s3_access_key_id and settings.s3_secret_access_key:
        # moto accepts any key; S3 clients still refuse to sign without one.
        lines += [
            f"    export RUNMESH_S3_ACCESS_KEY_ID={settings.s3_access_key_id}",
            "    export RUNMESH_S3_SECRET_ACCESS_KEY="
            + settings.s3_secret_access_key.get_secret_value(),
        ]
    if services:
        lines += ["", f"  Services (one replica each): {', '.join(services)}"]
    lines += [
        "",
        "  Production runs on Apache Kafka, PostgreSQL and S3/MinIO instead (see deploy/).",
        f"  Logs: {sandbox.directory}",
        "",
        "Press Ctrl-C to stop",
    ]
    return lines


async def run_dev(
    settings: Settings,
    *,
    demo: bool,
    verbose: bool = False,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    out: TextIO | None = None,
) -> None:
    """Run the sandbox until SIGINT/SIGTERM (or until `stop` is set), then stop it cleanly.

    Every long-lived part enters one AsyncExitStack, so the processes `runmesh dev` will also
    run (gateway, one replica of each service) join it after the sandbox and stop before it.
    One replica of each category service starts on the sandbox; with `demo`, a demo worker
    too, and a demo run is submitted over Kafka and followed live to its end.
    A service process that dies is started again (`runmesh.cli.supervision`), and the restart
    logged on stderr.
    `ready` is set once everything runs and the panel is printed. A signal during start-up
    cancels the start (the parts already up are stopped) and returns normally.
    Raises SandboxError when a part cannot start.
    """
    stream = out if out is not None else sys.stdout
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    started = False
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        if interrupted:
            return
        interrupted = True
        print("stopping...", file=sys.stderr, flush=True)
        stop.set()
        if not started and task is not None:
            task.cancel()

    # POSIX only, like the sandbox itself (pdeathsig, cgroups, the embedded PostgreSQL).
    installed = [signal.SIGINT, signal.SIGTERM]
    for signum in installed:
        loop.add_signal_handler(signum, on_signal)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(Sandbox(settings))
            log_dir = sandbox.directory or Path(tempfile.gettempdir())
            platform = sandbox.settings
            if platform.gateway_port == 0:
                platform = platform.model_copy(update={"gateway_port": free_port()})
            # The sandbox is the operator here: file storages may also live in demo-data
            # (never in the home itself, whose dev.json holds the token and the S3 keys).
            demo_data = (platform.home / "demo-data").resolve()
            platform = platform.model_copy(
                update={"storage_file_roots": [*platform.storage_file_roots, demo_data]}
            )
            print("starting the services...", file=sys.stderr, flush=True)
            specs = service_specs(platform, demo=demo)
            children = await asyncio.gather(
                *(start_service(spec, log_dir) for spec in specs), return_exceptions=True
            )
            running = [child for child in children if isinstance(child, ChildProcess)]
            # A service that dies is started again (logged, with backoff, a few times a minute).
            supervision = Supervision(log_dir)
            stack.push_async_callback(supervision.aclose)
            for spec, child in zip(specs, children, strict=True):
                if isinstance(child, ChildProcess):
                    supervision.add(spec, child)
            failures = [child for child in children if isinstance(child, BaseException)]
            if failures:
                raise failures[0]
            info = await _publish_dev_info(platform)
            stack.callback(remove_dev_info, platform, info.pid)
            started = True
            print("\n".join(describe(sandbox, [c.part for c in running], info)), file=stream)
            stream.flush()
            if demo:
                await run_demo(info, stream, data_dir=demo_data, verbose=verbose)
                print("\nPress Ctrl-C to stop", file=stream, flush=True)
            if ready is not None:
                ready.set()
            await stop.wait()
    except asyncio.CancelledError:
        if started or not interrupted or task is None:
            raise
        task.uncancel()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
