"""Every message on runmesh's topics as pydantic v2 models: the single source of wire truth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runmesh.core.errors import DecodeError
from runmesh.core.run_policy import (
    MAX_ATTEMPTS_BOUND,
    RETRY_BACKOFF_BOUND_S,
    Placement,
    Priority,
    Resources,
)
from runmesh.core.validation import describe_errors

SCHEMA_VERSION = 1
"""Version of the wire format; bumped only for changes old readers cannot ignore."""

JsonObject: TypeAlias = dict[str, Any]  # free-form JSON: params, results, log data

LogLevel = Literal["debug", "info", "warning", "error", "success"]
RunState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every timestamp on the wire is)."""
    return datetime.now(UTC)


class WireModel(BaseModel):
    """Base of every message: immutable, unknown fields ignored on read (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)


WORKSPACE_PATTERN: Final = r"^runs/[^/]+/[0-9a-f-]{36}/workspace/$"
"""What a pipeline workspace's key prefix looks like (the worker also checks its tenant)."""


def workspace_prefix(tenant: str, pipeline_run_id: uuid.UUID) -> str:
    """The key prefix of a pipeline run's workspace in the platform bucket."""
    return f"runs/{tenant}/{pipeline_run_id}/workspace/"


class RunRequest(WireModel):
    """A request to run one plugin action; `run_id` is the idempotency key."""

    run_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    category: str = Field(min_length=1, description="Service category, e.g. upload, export")
    plugin: str | None = Field(
        default=None,
        description="`code` or `code@version`; unset = the category's built-in plugin",
    )
    action: str = Field(min_length=1, description="The plugin action to run")
    params: JsonObject = Field(
        default_factory=dict, description="The action's params, validated by its params model"
    )
    tenant: str = Field(default="default", min_length=1, description="Who the run belongs to")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Cancel the run after this many seconds of running"
    )
    parent_run_id: uuid.UUID | None = Field(
        default=None, description="The run that requested this one (a child run)"
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS_BOUND,
        description="Starts before the run is failed `MaxAttemptsExceeded`; a worker applies "
        "at most its own RUNMESH_MAX_ATTEMPTS. Unset: the action's default, else that setting",
    )
    retry_backoff_s: float | None = Field(
        default=None,
        ge=0,
        le=RETRY_BACKOFF_BOUND_S,
        description="Seconds before the second attempt after a retryable failure, doubled for "
        "each later one (with jitter); a worker caps each wait at its RUNMESH_RETRY_BACKOFF_MAX_S. "
        "Unset: the action's default, else RUNMESH_RETRY_BACKOFF_S",
    )
    placement: Placement | None = Field(
        default=None,
        description="Which pools and labels it needs; the gateway publishes it on its pool's "
        "topic, and a worker without its labels fails it `PlacementMismatch`",
    )
    priority: Priority | None = Field(
        default=None,
        description="1 (lowest) to 9 (highest), unset = 5: among the queued runs of a pool "
        "the gateway admits, a higher priority starts first (a request produced straight to "
        "Kafka is not reordered)",
    )
    resources: Resources | None = Field(
        default=None,
        description="What it needs of its worker: `lock_all` runs it alone on the worker",
    )
    workspace: str | None = Field(
        default=None,
        max_length=300,
        pattern=WORKSPACE_PATTERN,
        description="A pipeline step's workspace: the key prefix of the platform bucket that "
        "every step of its pipeline run reads and writes, `runs/<tenant>/<run>/workspace/`",
    )
    submitted_at: datetime = Field(default_factory=utcnow, description="When it was requested")


class PipelineRequest(WireModel):
    """A request to start a pipeline, from any Kafka producer (the REST body of
    `POST /v1/pipelines` as a message); `run_id` is the idempotency key. The gateway checks
    `pipeline` (a PipelineSpec, docs/schemas/PipelineSpec.schema.json) as it would a REST
    submission; one it refuses becomes a failed run saying why."""

    run_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    tenant: str = Field(default="default", min_length=1, description="Who the run belongs to")
    pipeline: JsonObject = Field(description="The definition to run (a PipelineSpec)")
    params: JsonObject = Field(
        default_factory=dict, description="Values of the pipeline's params (over its defaults)"
    )
    submitted_at: datetime = Field(default_factory=utcnow, description="When it was requested")


class StartedPayload(BaseModel):
    """Payload of `run.started`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    plugin: str = Field(description="The code of the plugin that runs")
    plugin_version: str = Field(description="The exact version that runs")
    action: str = Field(description="The action that runs")
    params: JsonObject = Field(description="Validated params with secrets redacted")
    parent_run_id: uuid.UUID | None = Field(
        default=None, description="The run that requested this one (a child run), if any"
    )


class ProgressPayload(BaseModel):
    """Payload of `run.progress`: `current` of `total` in one progress category."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    category: str = Field(description="A progress category the action declares")
    current: float = Field(ge=0, description="Work done so far")
    total: float | None = Field(default=None, ge=0, description="All the work; null = unknown")


class LogPayload(BaseModel):
    """Payload of `run.log`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    level: LogLevel = Field(default="info", description="debug, info, warning, error, success")
    message: str = Field(description="The line, for people")
    code: str | None = Field(
        default=None, description="A log code the action declares in `log_messages`"
    )
    data: JsonObject = Field(default_factory=dict, description="Structured details")


class MetricPayload(BaseModel):
    """Payload of `run.metric`: named numbers in one metrics category, at an optional step."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    category: str = Field(description="A metrics category the action declares")
    values: dict[str, float] = Field(description="Metric name → value")
    step: int | None = Field(default=None, description="The step (e.g. epoch) they belong to")


class ArtifactPayload(BaseModel):
    """Payload of `run.artifact`: a file the run wrote, by URI."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(description="What the file is, for people")
    uri: str = Field(description="Where it is: s3://…, file://…")
    size: int | None = Field(default=None, ge=0, description="Bytes")
    checksum: str | None = Field(default=None, description="e.g. sha256:<hex>")
    media_type: str | None = Field(default=None, description="e.g. application/json")
    type: str | None = Field(default=None, description="What it holds, e.g. report:json")
    serializer: str | None = Field(default=None, description="What reads it back, e.g. json")


class SucceededPayload(BaseModel):
    """Payload of `run.succeeded`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    result: JsonObject = Field(default_factory=dict, description="What the action returned")


class FailedPayload(BaseModel):
    """Payload of `run.failed`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    error_type: str = Field(description="The exception's class, or a runtime error's name")
    message: str = Field(description="What went wrong, for people")
    traceback: str | None = Field(default=None, description="Where, when an exception raised it")
    retryable: bool = Field(default=False, description="Whether running it again may succeed")


class CancelledPayload(BaseModel):
    """Payload of `run.cancelled`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    reason: str = Field(default="cancelled", description="Who or what stopped it")


class RetryingPayload(BaseModel):
    """Payload of `run.retrying`: the attempt's retryable failure, and when the next begins."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    error_type: str = Field(description="The exception's class, or a runtime error's name")
    message: str = Field(description="What went wrong, for people")
    traceback: str | None = Field(default=None, description="Where, when an exception raised it")
    next_attempt: int = Field(ge=2, description="The attempt that follows")
    max_attempts: int = Field(ge=2, description="The run's limit of starts")
    delay_s: float = Field(ge=0, description="Seconds the worker waits before it starts it")


class RunEventBase(WireModel):
    """Envelope shared by every run event; `seq` is gapless per run and attempt, from 1."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    run_id: uuid.UUID
    attempt: int = Field(ge=1)
    seq: int = Field(ge=1)
    ts: datetime = Field(default_factory=utcnow)
    service: str
    worker: str
    # The request's, so that a reader that never saw the request (the gateway, for a run
    # produced straight to Kafka) can file the run; unset from producers older than them.
    tenant: str | None = Field(default=None, description="Tenant of the run's request")
    category: str | None = Field(default=None, description="Category of the run's request")


class RunStarted(RunEventBase):
    """The attempt began executing the action."""

    type: Literal["run.started"] = "run.started"
    payload: StartedPayload


class RunProgress(RunEventBase):
    """Progress in one category (coalesced by the worker: ≤ 1 per category per 200 ms)."""

    type: Literal["run.progress"] = "run.progress"
    payload: ProgressPayload


class RunLog(RunEventBase):
    """A log line from the action or the runtime."""

    type: Literal["run.log"] = "run.log"
    payload: LogPayload


class RunMetric(RunEventBase):
    """Metric values reported by the action."""

    type: Literal["run.metric"] = "run.metric"
    payload: MetricPayload


class RunArtifact(RunEventBase):
    """A file produced by the run."""

    type: Literal["run.artifact"] = "run.artifact"
    payload: ArtifactPayload


class RunRetrying(RunEventBase):
    """The attempt failed with a retryable error and the run has attempts left: the attempt's
    last event. Not terminal: its worker starts the next attempt after `delay_s`, or ends the
    run `cancelled` in this attempt when a cancel comes first."""

    type: Literal["run.retrying"] = "run.retrying"
    payload: RetryingPayload


class RunSucceeded(RunEventBase):
    """Terminal: the action returned a result."""

    type: Literal["run.succeeded"] = "run.succeeded"
    payload: SucceededPayload


class RunFailed(RunEventBase):
    """Terminal: the action or the runtime failed the run."""

    type: Literal["run.failed"] = "run.failed"
    payload: FailedPayload


class RunCancelled(RunEventBase):
    """Terminal: the run stopped because cancellation was requested."""

    type: Literal["run.cancelled"] = "run.cancelled"
    payload: CancelledPayload


RunEvent = Annotated[
    RunStarted
    | RunProgress
    | RunLog
    | RunMetric
    | RunArtifact
    | RunRetrying
    | RunSucceeded
    | RunFailed
    | RunCancelled,
    Field(discriminator="type"),
]
"""Any event on `runmesh.events`, discriminated by `type`."""

EventPayload: TypeAlias = (
    StartedPayload
    | ProgressPayload
    | LogPayload
    | MetricPayload
    | ArtifactPayload
    | RetryingPayload
    | SucceededPayload
    | FailedPayload
    | CancelledPayload
)

EVENT_TYPES: dict[str, type[RunEventBase]] = {
    "run.started": RunStarted,
    "run.progress": RunProgress,
    "run.log": RunLog,
    "run.metric": RunMetric,
    "run.artifact": RunArtifact,
    "run.retrying": RunRetrying,
    "run.succeeded": RunSucceeded,
    "run.failed": RunFailed,
    "run.cancelled": RunCancelled,
}
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset({"run.succeeded", "run.failed", "run.cancelled"})


class CancelRun(WireModel):
    """A request to cancel one run, read by every worker from `runmesh.control`."""

    run_id: uuid.UUID
    tenant: str = "default"
    reason: str = "cancelled by user"
    requested_at: datetime = Field(default_factory=utcnow)


class ActionManifest(BaseModel):
    """What a worker publishes about one action: enough for the gateway to validate params."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    method: Literal["task", "job", "restapi"]
    description: str = ""
    params_schema: JsonObject
    progress_categories: dict[str, JsonObject] = Field(default_factory=dict)
    metrics_categories: dict[str, JsonObject] = Field(default_factory=dict)
    timeout_s: float | None = Field(
        default=None, description="Default timeout of its runs (a request's own wins)"
    )
    max_attempts: int | None = Field(
        default=None, description="Default starts of its runs (a request's own wins)"
    )
    retry_backoff_s: float | None = Field(
        default=None, description="Default first retry backoff of its runs (a request's own wins)"
    )
    placement: Placement | None = Field(
        default=None, description="Default pools and labels of its runs (a request's own wins)"
    )
    resources: Resources | None = Field(
        default=None, description="What its runs need of their worker (a request's own wins)"
    )
    inputs: dict[str, list[str]] = Field(
        default_factory=dict, description="Param path → the types it takes in a pipeline"
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="`run` or a result key → the type it gives"
    )


class PluginArchive(BaseModel):
    """Where a published plugin version's archive is and how to verify it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    uri: str = Field(description="s3://bucket/plugins/<tenant>/<code>/<version>.zip")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class PluginManifest(WireModel):
    """A plugin version: announced by a worker at start (built-in or from its plugin path,
    `tenant` '*'), or by the gateway when a tenant publishes one (with `archive`) or deletes
    it (`deleted`)."""

    code: str
    name: str
    version: str
    category: str
    description: str = ""
    builtin: bool = False
    data_types: list[str] = Field(default_factory=list)
    annotation_types: list[str] = Field(default_factory=list)
    actions: dict[str, ActionManifest]
    service: str
    worker: str
    published_at: datetime = Field(default_factory=utcnow)
    tenant: str = Field(default="*", description="'*' = every tenant; else the publisher's")
    package_manager: Literal["pip", "uv"] = "uv"
    archive: PluginArchive | None = Field(
        default=None, description="Set for a published version: workers install it from here"
    )
    deleted: bool = Field(
        default=False, description="A published version withdrawn: no new runs may use it"
    )


MISSED_HEARTBEATS: Final = 3
"""Announcements a worker may miss before the gateway counts it gone (a crashed worker sends
no `stopped`)."""

PresenceState = Literal["serving", "stopping", "stopped"]


class WorkerPresence(WireModel):
    """A worker's announcement of itself on `runmesh.workers`, keyed by `worker`: when it
    starts serving, every RUNMESH_WORKER_HEARTBEAT_S, and once more when it stops. The gateway
    keeps the live ones, so a queued run can say why it waits. One category per record: a
    process serving several sends one per category, each with its own slots."""

    worker: str = Field(min_length=1, max_length=300, description="The worker's id")
    service: str = Field(description="The service it runs as (its events' `service`)")
    category: str = Field(min_length=1, description="The category it consumes requests of")
    pool: str = Field(default="default", description="Its pool (RUNMESH_WORKER_POOL)")
    labels: list[str] = Field(
        default_factory=list, description="What it offers, e.g. `gpu` (RUNMESH_WORKER_LABELS)"
    )
    slots: int = Field(ge=0, description="Runs it executes at once (RUNMESH_MAX_CONCURRENT_RUNS)")
    busy: int = Field(ge=0, description="Runs it holds now (running or about to start)")
    gpus: int = Field(default=0, ge=0, description="GPUs it offers runs (RUNMESH_WORKER_GPUS)")
    memory_mb: int = Field(
        default=0, ge=0, description="Memory it offers runs, MiB (RUNMESH_WORKER_MEMORY_MB)"
    )
    state: PresenceState = Field(
        description="`serving`; `stopping` (draining: takes no new run); `stopped` (gone)"
    )
    heartbeat_s: float = Field(
        gt=0, description="Seconds until its next announcement (RUNMESH_WORKER_HEARTBEAT_S)"
    )
    started_at: datetime = Field(description="When it began serving")
    sent_at: datetime = Field(default_factory=utcnow, description="When this was sent")


M = TypeVar("M", bound=BaseModel)

_RUN_EVENT_ADAPTER: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)


def encode(message: BaseModel) -> bytes:
    """Serialize a message to JSON bytes for the wire."""
    return orjson.dumps(message.model_dump(mode="json"))


def decode(data: bytes, model: type[M]) -> M:
    """Parse JSON bytes into `model`; raise `DecodeError` with a readable reason."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(f"not a valid {model.__name__}: {_describe(exc)}") from exc


def decode_event(data: bytes) -> RunEvent:
    """Parse JSON bytes into the matching `RunEvent` member; raise `DecodeError` if invalid."""
    try:
        return _RUN_EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise DecodeError(f"not a valid RunEvent: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    return describe_errors(exc.errors(include_url=False), root="(message)", limit=5)
