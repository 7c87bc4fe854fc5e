"""Test-only actions: each exercises one path of the worker runtime."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from pydantic import BaseModel, Field, SecretStr

from runmesh.core.errors import RunmeshError
from runmesh.plugins import Action
from runmesh.storage import platform_storage


class Noop(Action):
    """Returns at once (throughput benchmark)."""

    name = "noop"

    async def start(self) -> dict[str, bool]:
        return {"ok": True}


class LogLineParams(BaseModel):
    message: str = "hello from the action"


class LogLine(Action):
    """Logs `message` with Python's logging, in the thread a sync action runs in."""

    name = "log_line"
    params_model = LogLineParams

    def start(self) -> dict[str, bool]:
        params: LogLineParams = self.params  # type: ignore[assignment]
        logging.getLogger("testkit").warning(params.message)
        return {"logged": True}


class Context(Action):
    """Returns what the run knows of its platform side (task and job alike)."""

    name = "context"

    def start(self) -> dict[str, object]:
        context = self.run.context
        settings = context.settings
        return {
            "tenant": context.tenant,
            "category": context.category,
            "database_url": settings.database_url if settings is not None else None,
        }


class EchoParams(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(gt=0, le=1000)
    token: SecretStr | None = None


class Echo(Action):
    """Reports progress, metrics, logs and an artifact, and echoes its params."""

    name = "echo"
    params_model = EchoParams
    progress_categories = {"echo": {"description": "Echoing", "proportion": 100}}
    metrics_categories = {"echo": "Counters"}
    log_messages = {"ECHO_DONE": {"message": "echoed {} times", "level": "success"}}

    def start(self) -> dict[str, object]:
        params: EchoParams = self.params  # type: ignore[assignment]
        self.run.log_message(f"hello {params.name}")
        for i in range(1, params.count + 1):
            self.run.set_progress(i, params.count, category="echo")
        self.run.set_metrics({"count": params.count}, category="echo", step=1)
        # The run's own folder of the platform bucket: what the gateway serves of it.
        folder = f"s3://runmesh/runs/{self.run.context.tenant}/{self.run.run_id}"
        self.run.log_artifact("echo.txt", f"{folder}/echo.txt", size=4)
        self.run.log_message_with_code("ECHO_DONE", params.count)
        return {"name": params.name, "count": params.count}


class SleepParams(BaseModel):
    seconds: float = Field(default=1.0, ge=0)
    steps: int = Field(default=10, ge=1)


class Sleep(Action):
    """Sleeps in steps, reporting progress and stopping when cancelled."""

    name = "sleep"
    params_model = SleepParams
    progress_categories = {"sleep": "Sleeping"}

    def start(self) -> dict[str, object]:
        params: SleepParams = self.params  # type: ignore[assignment]
        for step in range(params.steps):
            self.run.check_cancelled()
            time.sleep(params.seconds / params.steps)
            self.run.set_progress(step + 1, params.steps)
        return {"slept": params.seconds, "pid": os.getpid()}


class AsyncSleep(Action):
    """Sleeps on the event loop (cancelled at its await)."""

    name = "async_sleep"
    params_model = SleepParams

    async def start(self) -> dict[str, object]:
        params: SleepParams = self.params  # type: ignore[assignment]
        await asyncio.sleep(params.seconds)
        return {"slept": params.seconds}


class FailParams(BaseModel):
    message: str = "boom"


class Fail(Action):
    """Raises."""

    name = "fail"
    params_model = FailParams

    def start(self) -> dict[str, object]:
        params: FailParams = self.params  # type: ignore[assignment]
        raise ValueError(params.message)


class FlakyError(RunmeshError):
    """A failure a retry may fix, like a service that is down for a moment."""

    retriable = True


class FlakyParams(BaseModel):
    failures: int = Field(default=1, ge=0, description="Attempts that fail before one succeeds")


class Flaky(Action[FlakyParams]):
    """Fails retryably in its first `failures` attempts, then returns the attempt it is."""

    name = "flaky"
    params_model = FlakyParams

    def start(self) -> dict[str, object]:
        attempt = self.run.attempt
        if attempt <= self.params.failures:
            raise FlakyError(f"attempt {attempt} met a flaky service")
        return {"attempt": attempt}


class Crash(Action):
    """Kills its own process without reporting."""

    name = "crash"

    def start(self) -> dict[str, object]:
        self.run.log_message("about to crash")
        os._exit(1)


class OddResult(Action):
    """Returns a result that is not JSON."""

    name = "odd_result"

    def start(self) -> dict[str, object]:
        return {"handle": object()}


class HogParams(BaseModel):
    mb: int = Field(default=4096, gt=0)


class Hog(Action):
    """Allocates far past the job memory limit."""

    name = "hog"
    params_model = HogParams

    def start(self) -> dict[str, object]:
        params: HogParams = self.params  # type: ignore[assignment]
        # Written, not only reserved: a zeroed block would cost no memory until touched.
        blocks = [bytearray(b"\x01") * (1024 * 1024) for _ in range(params.mb)]
        return {"allocated": len(blocks)}


class VisibleGpus(Action):
    """Reports the GPUs its process is allowed to see."""

    name = "visible_gpus"

    def start(self) -> dict[str, object]:
        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


class Stubborn(Action):
    """Ignores cancellation (only SIGKILL stops it)."""

    name = "stubborn"
    params_model = SleepParams

    def start(self) -> dict[str, object]:
        params: SleepParams = self.params  # type: ignore[assignment]
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return {"done": True}


class HoldLoop(Action):
    """An async start that never awaits: it holds the worker's event loop."""

    name = "hold_loop"
    params_model = SleepParams

    async def start(self) -> dict[str, object]:
        params: SleepParams = self.params  # type: ignore[assignment]
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)  # noqa: ASYNC251 -- blocking the loop on purpose
        return {"done": True}


class ArtifactParams(BaseModel):
    name: str = Field(min_length=1)
    uri: str = Field(min_length=1)


class Artifact(Action):
    """Reports an artifact at whatever URI it is given, as a hostile plugin could."""

    name = "artifact"
    params_model = ArtifactParams

    def start(self) -> dict[str, object]:
        params: ArtifactParams = self.params  # type: ignore[assignment]
        self.run.log_artifact(params.name, params.uri)
        return {"uri": params.uri}


class MakeDatasetParams(BaseModel):
    format: str = "coco"


class MakeDataset(Action):
    """Gives a (pretend) dataset of a format: its outputs are typed in config.yaml."""

    name = "make_dataset"
    params_model = MakeDatasetParams

    async def start(self) -> dict[str, object]:
        params: MakeDatasetParams = self.params  # type: ignore[assignment]
        return {"uri": f"s3://datasets/{params.format}", "format": params.format}


class UseDatasetParams(BaseModel):
    dataset: str
    source_run: str | None = None


class UseDataset(Action):
    """Takes a dataset of the formats its config.yaml accepts; returns what it was given."""

    name = "use_dataset"
    params_model = UseDatasetParams

    async def start(self) -> dict[str, object]:
        params: UseDatasetParams = self.params  # type: ignore[assignment]
        return {"used": params.dataset, "source_run": params.source_run}


class WorkspaceFileParams(BaseModel):
    name: str = Field(min_length=1)
    text: str = ""


class WorkspaceWrite(Action):
    """Writes a file into its pipeline's workspace."""

    name = "workspace_write"
    params_model = WorkspaceFileParams

    async def start(self) -> dict[str, object]:
        params: WorkspaceFileParams = self.params  # type: ignore[assignment]
        context = self.run.context
        assert context.settings is not None and context.workspace, "not a pipeline step"
        async with platform_storage(context.settings.s3) as bucket:
            await bucket.write_bytes(f"{context.workspace}{params.name}", params.text.encode())
        return {"workspace": context.workspace}


class WorkspaceRead(Action):
    """Reads a file of its pipeline's workspace."""

    name = "workspace_read"
    params_model = WorkspaceFileParams

    async def start(self) -> dict[str, object]:
        params: WorkspaceFileParams = self.params  # type: ignore[assignment]
        context = self.run.context
        assert context.settings is not None and context.workspace, "not a pipeline step"
        async with platform_storage(context.settings.s3) as bucket:
            data = await bucket.read_bytes(f"{context.workspace}{params.name}", max_bytes=1 << 20)
        return {"text": data.decode(), "uri": params.text}


class GiveResultParams(BaseModel):
    result: dict[str, object] = Field(default_factory=dict)


class GiveResult(Action):
    """Returns the result its params name (a result the test needs, e.g. a model's id)."""

    name = "give_result"
    params_model = GiveResultParams

    async def start(self) -> dict[str, object]:
        params: GiveResultParams = self.params  # type: ignore[assignment]
        return params.result


class TwoPhases(Action):
    """Reports two progress categories, declared longest name first (JSONB would sort them
    the other way round)."""

    name = "two_phases"
    progress_categories = {
        "download": {"description": "Downloading", "proportion": 50},
        "ok": {"description": "Checking", "proportion": 50},
    }

    async def start(self) -> dict[str, object]:
        self.run.set_progress(1, 1, category="ok")
        self.run.set_progress(1, 1, category="download")
        return {"done": True}
