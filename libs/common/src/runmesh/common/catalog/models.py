"""What users create in the catalog, validated: storages per provider, data collections."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
)

from runmesh.common.events import JsonObject

# PostgreSQL stores no NUL character in text or jsonb; control characters in a name are a
# mistake, never an intent.
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Description = Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_EXTENSION = re.compile(r"^\.[a-z0-9][a-z0-9._+-]*$")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _http_url(value: str) -> str:
    _no_nul(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return value


# -- storages --------------------------------------------------------------------------------


class FileStorageConfig(BaseModel):
    """Files under a directory that the services can read (same host or a shared mount)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(description="Absolute directory path, e.g. /data/images")

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: str) -> str:
        _no_nul(root)
        if not PurePosixPath(root).is_absolute():
            raise ValueError(f"must be an absolute path, not {root!r}")
        return root


class S3StorageConfig(BaseModel):
    """Objects of one S3 bucket under a key prefix; credentials come from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(description="Bucket name (S3 naming rules)")
    prefix: str = Field(default="", max_length=1024, description="Key prefix, no leading /")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); unset = AWS"
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        if not _BUCKET.match(bucket):
            raise ValueError(
                "must be 3-63 characters of lowercase letters, digits, '.' and '-', "
                "beginning and ending with a letter or digit"
            )
        if ".." in bucket or ".-" in bucket or "-." in bucket:
            raise ValueError("must not have '..', '.-' or '-.'")
        if bucket.startswith(_BUCKET_PREFIXES) or bucket.endswith(_BUCKET_SUFFIXES):
            raise ValueError("uses a prefix or suffix that S3 reserves")
        try:
            ipaddress.IPv4Address(bucket)
        except ValueError:
            return bucket
        raise ValueError("must not be formatted as an IP address")

    @field_validator("prefix")
    @classmethod
    def _relative_prefix(cls, prefix: str) -> str:
        return _no_nul(prefix).lstrip("/")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url)


class HttpStorageConfig(BaseModel):
    """Files fetched over HTTP(S) below a base URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="http:// or https:// URL that file paths are joined to")
    allow_private: bool = Field(
        default=False,
        description="Allow hosts that resolve to private, loopback or link-local addresses",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        return _http_url(url)


StorageConfig: TypeAlias = FileStorageConfig | S3StorageConfig | HttpStorageConfig
StorageProviderName: TypeAlias = Literal["file", "s3", "http"]

_CONFIG_MODELS: dict[str, type[StorageConfig]] = {
    "file": FileStorageConfig,
    "s3": S3StorageConfig,
    "http": HttpStorageConfig,
}


class _StorageCreateBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique per tenant")


class FileStorageCreate(_StorageCreateBase):
    """A storage of provider `file`."""

    provider: Literal["file"]
    config: FileStorageConfig


class S3StorageCreate(_StorageCreateBase):
    """A storage of provider `s3`."""

    provider: Literal["s3"]
    config: S3StorageConfig


class HttpStorageCreate(_StorageCreateBase):
    """A storage of provider `http`."""

    provider: Literal["http"]
    config: HttpStorageConfig


StorageCreate: TypeAlias = Annotated[
    FileStorageCreate | S3StorageCreate | HttpStorageCreate, Field(discriminator="provider")
]
"""A storage to create: `{name, provider, config}` with the provider's config."""

STORAGE_CREATE: TypeAdapter[FileStorageCreate | S3StorageCreate | HttpStorageCreate] = TypeAdapter(
    StorageCreate
)


def parse_storage_config(provider: str, config: JsonObject) -> StorageConfig:
    """A stored storage's config as its provider's model (raises pydantic's ValidationError)."""
    model = _CONFIG_MODELS.get(provider)
    if model is None:
        raise ValueError(f"unknown storage provider {provider!r}")
    return model.model_validate(config)


# -- data collections ------------------------------------------------------------------------


def _normalise_extension(extension: str) -> str:
    value = extension.strip().lower()
    if value and not value.startswith("."):
        value = "." + value
    if not _EXTENSION.match(value):
        raise ValueError(f"{extension!r} is not a file extension like '.jpg' or '.nii.gz'")
    return value


Extension = Annotated[str, AfterValidator(_normalise_extension)]


class FileSpecificationIn(BaseModel):
    """One kind of file in a data unit, recognised by its extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        description="Key of this file in a data unit's `files`, e.g. `image`",
    )
    required: bool = Field(default=True, description="A data unit must have this file")
    extensions: list[Extension] = Field(
        min_length=1,
        max_length=50,
        description="Extensions this file may have; normalised to lowercase with a leading dot",
    )
    is_primary: bool = Field(default=False, description="The file that stands for the unit")

    @field_validator("extensions")
    @classmethod
    def _distinct(cls, extensions: list[str]) -> list[str]:
        return list(dict.fromkeys(extensions))


def _walk_strings(value: Any) -> Iterator[str]:  # Any: arbitrary JSON
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_strings(item)


class DataCollectionCreate(BaseModel):
    """A data collection to create: what files make one data unit."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique per tenant")
    description: Description = ""
    file_specifications: list[FileSpecificationIn] = Field(min_length=1, max_length=100)
    data_unit_meta_schema: JsonObject | None = Field(
        default=None, description="JSON Schema that each data unit's `meta` must match"
    )

    @field_validator("file_specifications")
    @classmethod
    def _consistent(cls, specs: list[FileSpecificationIn]) -> list[FileSpecificationIn]:
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise ValueError(f"names must be unique: {spec.name!r} repeats")
            seen.add(spec.name)
        primary = [spec.name for spec in specs if spec.is_primary]
        if len(primary) > 1:
            raise ValueError(f"at most one may be primary, not {', '.join(map(repr, primary))}")
        if primary and not next(spec for spec in specs if spec.is_primary).required:
            raise ValueError(f"the primary specification {primary[0]!r} must be required")
        return specs

    @field_validator("data_unit_meta_schema")
    @classmethod
    def _storable(cls, schema: JsonObject | None) -> JsonObject | None:
        if schema is not None and any("\x00" in text for text in _walk_strings(schema)):
            raise ValueError("must not contain NUL characters")
        return schema
