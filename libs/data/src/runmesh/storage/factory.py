"""Storage from a tenant's provider config (under the operator's policy), from a URL the
platform wrote, or the platform bucket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
)

from runmesh.core.settings_parts import S3Settings, StorageSettings
from runmesh.storage.base import Storage, validate_path
from runmesh.storage.brokered import BlockingBrokerChannel, open_brokered
from runmesh.storage.errors import StorageError, StoragePathError
from runmesh.storage.file import FileStorage
from runmesh.storage.http import HttpStorage
from runmesh.storage.policy import StoragePolicy
from runmesh.storage.s3 import MiB, S3Storage

_Config = TypeVar("_Config", bound=BaseModel)

_broker: BlockingBrokerChannel | None = None


def route_storages_through(channel: BlockingBrokerChannel) -> None:
    """From now on, open every storage of this process through `channel` (its worker's
    storage broker). Called once by a job running a tenant's code, which holds no storage
    credentials: `open_storage` and `platform_storage` then return `BrokeredStorage`s the
    worker opened after its own tenant and policy checks."""
    global _broker  # one job per process: the route is the process's, for its whole life
    _broker = channel


class _FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(min_length=1, description="Directory every path is under")


class _S3Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str = Field(min_length=1)
    secret_access_key: SecretStr = Field(min_length=1)


class _S3Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="", description="Key prefix every path is under")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; unset = RUNMESH_S3_ENDPOINT_URL"
    )
    region: str | None = Field(default=None, description="Unset = RUNMESH_S3_REGION")
    credentials: _S3Credentials | None = Field(
        default=None, description="The tenant's keys; unset = see `open_storage`"
    )

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        try:
            return validate_path(value, directory=True)
        except StoragePathError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class _HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://[^/?#]+")
    allow_private: bool = False
    allow_networks: list[IPvAnyNetwork] = Field(
        default_factory=list, description="Private networks allowed even without allow_private"
    )


def _validated(model: type[_Config], provider: str, config: Mapping[str, Any]) -> _Config:
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(part) for part in error['loc']) or '(config)'!r}: {error['msg']}"
            for error in exc.errors()
        )
        raise StorageError(f"invalid {provider!r} storage config: {problems}") from None


PROVIDERS = ("file", "s3", "http")


def open_storage(
    provider: str, config: Mapping[str, Any], storage: StorageSettings, *, tenant: str
) -> Storage:
    """`tenant`'s storage of `provider` ("file", "s3", "http") with `config`.

    Configs: file `{root}`; s3 `{bucket, prefix?, endpoint_url?, region?, credentials?}`;
    http `{base_url, allow_private?, allow_networks?}`. `config` is Any-valued because it
    comes from user JSON; it is validated here (StorageError naming the field), then checked
    against the operator's policy (`StoragePolicy`: StoragePolicyError naming the setting).

    An s3 storage signs with its own `credentials`. Without them, the platform's key signs
    only a storage in the platform bucket on the platform's endpoint (which the policy keeps
    under the tenant's own folders); any other is read anonymously (unsigned: public buckets),
    never with the platform's or the host's keys.
    """
    if _broker is not None:
        return open_brokered(_broker, {"provider": provider, "config": dict(config)})
    checked = _checked(provider, config, storage, tenant)
    if isinstance(checked, _FileConfig):
        return FileStorage(checked.root)
    if isinstance(checked, _S3Config):
        platform_key = StoragePolicy.from_settings(storage).s3(
            bucket=checked.bucket,
            prefix=checked.prefix,
            endpoint_url=checked.endpoint_url,
            tenant=tenant,
        )
        return _s3_storage(checked, storage.s3, platform_key=platform_key)
    return HttpStorage(
        checked.base_url,
        allow_private=checked.allow_private,
        allow_networks=checked.allow_networks,
    )


def check_storage(
    provider: str, config: Mapping[str, Any], storage: StorageSettings, *, tenant: str
) -> None:
    """What `open_storage` checks, without opening: StorageError for an invalid config,
    StoragePolicyError for one the operator's policy refuses."""
    _checked(provider, config, storage, tenant)


def _checked(
    provider: str, config: Mapping[str, Any], storage: StorageSettings, tenant: str
) -> _FileConfig | _S3Config | _HttpConfig:
    """The validated config, checked against the policy (a file root as its real path)."""
    policy = StoragePolicy.from_settings(storage)
    if provider == "file":
        file_config = _validated(_FileConfig, provider, config)
        real = policy.file_root(file_config.root, tenant)
        return file_config.model_copy(update={"root": str(real)})
    if provider == "s3":
        s3_config = _validated(_S3Config, provider, config)
        policy.s3(
            bucket=s3_config.bucket,
            prefix=s3_config.prefix,
            endpoint_url=s3_config.endpoint_url,
            tenant=tenant,
        )
        return s3_config
    if provider in ("http", "https"):
        http_config = _validated(_HttpConfig, provider, config)
        policy.http(
            allow_private=http_config.allow_private, allow_networks=http_config.allow_networks
        )
        return http_config
    raise StorageError(f"unknown storage provider {provider!r}; known: {', '.join(PROVIDERS)}")


def _s3_storage(config: _S3Config, s3: S3Settings, *, platform_key: bool) -> S3Storage:
    if config.credentials is not None:
        keys: tuple[str | None, str | None] = (
            config.credentials.access_key_id,
            config.credentials.secret_access_key.get_secret_value(),
        )
    elif platform_key:
        secret = s3.secret_access_key
        keys = (s3.access_key_id, secret.get_secret_value() if secret else None)
    else:
        keys = (None, None)
    return S3Storage(
        config.bucket,
        config.prefix,
        endpoint_url=config.endpoint_url or s3.endpoint_url,
        access_key_id=keys[0],
        secret_access_key=keys[1],
        anonymous=config.credentials is None and not platform_key,
        region=config.region or s3.region,
        multipart_threshold=s3.multipart_threshold_mb * MiB,
        part_size=s3.part_size_mb * MiB,
        max_concurrency=s3.max_concurrency,
    )


def storage_from_url(url: str, s3: S3Settings, *, allow_private: bool = False) -> Storage:
    """The storage a URL names: `file:///dir`, `s3://bucket/prefix`, `http(s)://host/dir/`.

    Platform side only, for URLs the platform wrote itself (a published plugin's archive):
    no tenant policy applies and s3 signs with the platform's key. A URL a tenant supplied is
    opened through `TenantUris`, never here.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"{url!r}: file URLs must name a local path (file:///dir)")
        return FileStorage(unquote(parts.path))
    if parts.scheme == "s3":
        prefix = unquote(parts.path).strip("/")
        try:
            return S3Storage.from_settings(s3, bucket=parts.netloc, prefix=prefix)
        except StoragePathError as exc:
            raise StorageError(f"{url!r}: {exc}") from None
    if parts.scheme in ("http", "https"):
        return HttpStorage(url, allow_private=allow_private)
    raise StorageError(f"{url!r}: unsupported storage URL (file://, s3://, http(s)://)")


def platform_storage(s3: S3Settings, prefix: str = "") -> Storage:
    """The platform bucket (`RUNMESH_S3_BUCKET`) at the S3 settings' endpoint, under `prefix`.

    In a tenant's job (`route_storages_through`): the bucket as the worker serves it, limited
    to the tenant's own folders, keys from the bucket's root."""
    if _broker is not None:
        if prefix:
            raise StorageError("a tenant's job opens the platform bucket at its root only")
        return open_brokered(_broker, {"platform": True})
    return S3Storage.from_settings(s3, prefix=prefix)
