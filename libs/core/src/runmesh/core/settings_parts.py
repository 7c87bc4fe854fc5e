"""The parts of `Settings` by concern, each handed only to the code that uses it.

`Settings` reads every `RUNMESH_*` variable once (its field names are the variables' names,
which deployments already set); a part is a frozen view of the fields of one concern, built
by `Settings.kafka`, `.database`, `.s3` and so on. A Kafka client is made from
`KafkaSettings` and sees no S3 key; a pool from `DatabaseSettings` sees no Kafka password.

A part's field `x` is the `Settings` field `<PREFIX>x` where one exists, else `x` itself:
`KafkaSettings.bootstrap` is `kafka_bootstrap`, `KafkaSettings.topic_prefix` is itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SecretStr


class SettingsPart(BaseModel):
    """A frozen view of the `Settings` fields of one concern."""

    model_config = ConfigDict(frozen=True)

    PREFIX: ClassVar[str] = ""


class KafkaSettings(SettingsPart):
    """The broker, the clients' tuning and topic naming (`RUNMESH_KAFKA_*`, `RUNMESH_TOPIC_*`)."""

    PREFIX: ClassVar[str] = "kafka_"

    bootstrap: str | None
    request_timeout_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    linger_ms: int
    fetch_max_wait_ms: int
    max_batch_bytes: int
    idempotence: bool
    security_protocol: str
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: SecretStr | None
    topic_prefix: str
    topic_partitions: int
    topic_replication_factor: int
    max_message_bytes: int

    def topic(self, name: str) -> str:
        """Return `name` under this deployment's topic prefix."""
        return f"{self.topic_prefix}.{name}"


class DatabaseSettings(SettingsPart):
    """The PostgreSQL DSN and whether opening the catalog applies its migrations."""

    PREFIX: ClassVar[str] = "database_"

    url: str | None
    catalog_migrations: bool


class S3Settings(SettingsPart):
    """The platform's S3 endpoint, bucket, credentials and transfer tuning (`RUNMESH_S3_*`)."""

    PREFIX: ClassVar[str] = "s3_"

    endpoint_url: str | None
    bucket: str
    access_key_id: str | None
    secret_access_key: SecretStr | None
    region: str
    multipart_threshold_mb: int
    part_size_mb: int
    max_concurrency: int


class StoragePolicySettings(SettingsPart):
    """Where tenants' storages may point (`RUNMESH_STORAGE_*`, docs/security.md)."""

    PREFIX: ClassVar[str] = "storage_"

    file_roots: tuple[Path, ...]
    s3_endpoints: tuple[str, ...]
    http_allow_private: bool


class PluginSettings(SettingsPart):
    """Where plugins are found and cached, archive limits, which are trusted in process."""

    PREFIX: ClassVar[str] = "plugin_"

    path: tuple[Path, ...]
    cache_dir: Path
    install_timeout_s: float
    archive_max_bytes: int
    archive_max_unpacked_bytes: int
    archive_max_files: int
    in_process_plugins: tuple[str, ...]


class GatewaySettings(SettingsPart):
    """The gateway's address, request limits, SSE and token cache (`RUNMESH_GATEWAY_*`)."""

    PREFIX: ClassVar[str] = "gateway_"

    host: str
    port: int
    max_body_bytes: int
    sse_heartbeat_s: float
    sse_client_queue: int
    token_cache_ttl_s: float
    tenant: str
    admission_per_slot: float
    admission_ahead_s: float


class PipelineSettings(SettingsPart):
    """How long pipeline workspaces are kept (`RUNMESH_PIPELINE_*`)."""

    PREFIX: ClassVar[str] = "pipeline_"

    workspace_retention_s: float
    workspace_sweep_interval_s: float


class WorkerSettings(SettingsPart):
    """A worker's concurrency, retries, job limits, cancellation and health."""

    max_concurrent_runs: int
    max_attempts: int
    retry_backoff_s: float
    retry_backoff_max_s: float
    job_memory_mb: int
    job_memory_limit: Literal["auto", "cgroup", "rlimit", "off"]
    job_sandbox: Literal["landlock", "off"]
    job_network: Literal["catalog", "open"]
    cancel_grace_s: float
    cancel_timeout_s: float
    shutdown_grace_s: float
    commit_interval_s: float
    progress_interval_s: float
    loop_block_limit_s: float
    health_loop_stall_s: float
    worker_pool: str
    worker_labels: list[str]
    worker_heartbeat_s: float
    worker_gpus: int
    worker_gpu_devices: list[str]
    worker_memory_mb: int | None
    metrics_port: int | None


class CliSettings(SettingsPart):
    """What the `runmesh` command talks to, and where `runmesh dev` keeps its state."""

    gateway_url: str | None
    token: SecretStr | None
    home: Path


class TelemetrySettings(SettingsPart):
    """Where traces go (`OTEL_EXPORTER_OTLP_ENDPOINT`; unset: not exported), and the format
    of process logs (`RUNMESH_LOG_FORMAT`)."""

    otel_exporter_otlp_endpoint: str | None
    log_format: Literal["auto", "json", "text"]


class SandboxSettings(SettingsPart):
    """The embedded dev stack's broker binary and data directory."""

    broker_bin: Path | None
    sandbox_dir: Path | None


PARTS: tuple[type[SettingsPart], ...] = (
    KafkaSettings,
    DatabaseSettings,
    S3Settings,
    StoragePolicySettings,
    PluginSettings,
    GatewaySettings,
    PipelineSettings,
    WorkerSettings,
    CliSettings,
    TelemetrySettings,
    SandboxSettings,
)
"""Every part; each `Settings` field belongs to exactly one (a test checks it)."""


class StorageSettings(BaseModel):
    """What opening a tenant's storage needs: the platform's S3 part (its bucket, endpoint and
    key) and the operator's policy of where tenants' storages may point."""

    model_config = ConfigDict(frozen=True)

    s3: S3Settings
    policy: StoragePolicySettings
