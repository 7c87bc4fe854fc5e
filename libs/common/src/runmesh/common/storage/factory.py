"""Storage from a provider name and its validated config, from a URL, or the platform bucket."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError, field_validator

from runmesh.common.settings import Settings
from runmesh.common.storage.base import Storage, validate_path
from runmesh.common.storage.errors import StorageError, StoragePathError
from runmesh.common.storage.file import FileStorage
from runmesh.common.storage.http import HttpStorage
from runmesh.common.storage.s3 import S3Storage

_Config = TypeVar("_Config", bound=BaseModel)


class _FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(description="Directory every path is under")


class _S3Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="", description="Key prefix every path is under")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; unset = RUNMESH_S3_ENDPOINT_URL"
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


def open_storage(provider: str, config: Mapping[str, Any], settings: Settings) -> Storage:
    """The storage `provider` ("file", "s3", "http") with `config`; StorageError if invalid.

    Configs: file `{root}`; s3 `{bucket, prefix?, endpoint_url?}` (credentials, region and
    part sizes from `settings`); http `{base_url, allow_private?, allow_networks?}`.
    `config` is Any-valued because it comes from user JSON/YAML; it is validated here.
    """
    if provider == "file":
        file_config = _validated(_FileConfig, provider, config)
        return FileStorage(file_config.root)
    if provider == "s3":
        s3_config = _validated(_S3Config, provider, config)
        return S3Storage.from_settings(
            settings,
            bucket=s3_config.bucket,
            prefix=s3_config.prefix,
            endpoint_url=s3_config.endpoint_url,
        )
    if provider in ("http", "https"):
        http_config = _validated(_HttpConfig, provider, config)
        return HttpStorage(
            http_config.base_url,
            allow_private=http_config.allow_private,
            allow_networks=http_config.allow_networks,
        )
    raise StorageError(f"unknown storage provider {provider!r}; known: {', '.join(PROVIDERS)}")


def storage_from_url(url: str, settings: Settings, *, allow_private: bool = False) -> Storage:
    """The storage a URL names: `file:///dir`, `s3://bucket/prefix`, `http(s)://host/dir/`."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"{url!r}: file URLs must name a local path (file:///dir)")
        return open_storage("file", {"root": unquote(parts.path)}, settings)
    if parts.scheme == "s3":
        prefix = unquote(parts.path).strip("/")
        return open_storage("s3", {"bucket": parts.netloc, "prefix": prefix}, settings)
    if parts.scheme in ("http", "https"):
        return open_storage("http", {"base_url": url, "allow_private": allow_private}, settings)
    raise StorageError(f"{url!r}: unsupported storage URL (file://, s3://, http(s)://)")


def platform_storage(settings: Settings, prefix: str = "") -> S3Storage:
    """The platform bucket (`RUNMESH_S3_BUCKET`) at `settings`' S3 endpoint, under `prefix`."""
    return S3Storage.from_settings(settings, prefix=prefix)
