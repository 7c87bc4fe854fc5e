"""What users create in the catalog, validated, and the filters that exports read it with."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    StringConstraints,
    TypeAdapter,
    field_serializer,
    field_validator,
)

from runmesh.core.events import JsonObject
from runmesh.dm import DMData

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


# What the API shows of a stored secret (pydantic's own SecretStr rendering).
SECRET_MASK = "**********"


class S3Credentials(BaseModel):
    """The tenant's own keys for its bucket; the secret is stored, never shown again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x20\x7f]+$")
    secret_access_key: SecretStr = Field(min_length=1, max_length=256)

    @field_serializer("secret_access_key", when_used="json")
    def _stored(self, secret: SecretStr, info: SerializationInfo) -> str:
        # The repository stores it (context `reveal_secrets`); everything else sees the mask.
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return secret.get_secret_value()
        return SECRET_MASK


class S3StorageConfig(BaseModel):
    """Objects of one S3 bucket under a key prefix, read with the tenant's own `credentials`
    (without them: unsigned, for public buckets; the platform's key only signs for the
    platform bucket, under the tenant's own folders)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(description="Bucket name (S3 naming rules)")
    prefix: str = Field(default="", max_length=1024, description="Key prefix, no leading /")
    endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO); unset = the platform's "
        "(RUNMESH_S3_ENDPOINT_URL); others must be on the operator's list",
    )
    region: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="Region requests are signed for; unset = RUNMESH_S3_REGION",
    )
    credentials: S3Credentials | None = Field(
        default=None, description="The tenant's keys; GET shows the secret masked"
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


def public_storage_config(config: JsonObject) -> JsonObject:
    """A stored config as the API shows it: a credentials secret masked."""
    credentials = config.get("credentials")
    if not isinstance(credentials, dict):
        return config
    return config | {"credentials": credentials | {"secret_access_key": SECRET_MASK}}


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


# -- annotation: projects, tasks, assignments, ground truth ----------------------------------

AnnotationType: TypeAlias = Literal[
    "image_detection", "image_segmentation", "image_keypoints", "image_classification"
]
TaskStatus: TypeAlias = Literal["pending", "in_progress", "review", "completed", "skipped"]
AssignmentStatus: TypeAlias = Literal["submitted", "approved", "rejected"]
GroundTruthCategory: TypeAlias = Literal["train", "validation", "test"]
ExportTarget: TypeAlias = Literal["task", "assignment", "ground_truth"]

# One request carries at most this many tasks or ground-truth items: a bigger batch belongs in
# several requests (or a run), not one body the gateway has to hold and validate at once.
MAX_BATCH = 10_000

# Class ids end up in COCO category ids and YOLO class indices: small non-negative integers
# that every reader takes (int32).
_MAX_CLASS_ID = 2**31 - 1


class LabelClass(BaseModel):
    """One class of a label schema: its stable id (what COCO and YOLO files carry) and name
    (what DM annotations carry as `class_name`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0, le=_MAX_CLASS_ID, description="Stable class id, e.g. a COCO category")
    name: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ] = Field(description="The `class_name` annotations use")


class LabelSchema(BaseModel):
    """A project's classes; ids and names are each unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[LabelClass] = Field(min_length=1, max_length=10_000)

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: list[LabelClass]) -> list[LabelClass]:
        for attribute in ("id", "name"):
            values = [getattr(label, attribute) for label in classes]
            repeated = sorted({value for value in values if values.count(value) > 1}, key=str)
            if repeated:
                shown = ", ".join(repr(value) for value in repeated[:5])
                raise ValueError(f"class {attribute}s must be unique: {shown} repeat")
        return classes

    def ids_by_name(self) -> dict[str, int]:
        """Class id by class name."""
        return {label.name: label.id for label in self.classes}


class ProjectCreate(BaseModel):
    """A project to create: which data collection it annotates, how, with which classes."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique per tenant")
    description: Description = ""
    data_collection_id: uuid.UUID = Field(description="A data collection of the tenant")
    annotation_type: AnnotationType
    label_schema: LabelSchema


class TasksCreate(BaseModel):
    """Data units of the project's collection to make tasks of (existing tasks are kept)."""

    model_config = ConfigDict(extra="forbid")

    data_unit_ids: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=MAX_BATCH)


class AssignmentCreate(BaseModel):
    """One annotator's work on a task, in DM format."""

    model_config = ConfigDict(extra="forbid")

    status: AssignmentStatus = "submitted"
    data: DMData


class GroundTruthDatasetCreate(BaseModel):
    """A ground-truth dataset to create; its data comes in versions."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique per tenant")
    description: Description = ""
    project_id: uuid.UUID | None = Field(
        default=None, description="A project of the tenant; its label schema checks the items"
    )


class GroundTruthItemIn(BaseModel):
    """One item of a ground-truth version: annotations in DM, optionally of a data unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_unit_id: int | None = Field(default=None, ge=1, description="A data unit of the tenant")
    category: GroundTruthCategory | None = Field(default=None, description="Dataset split")
    data: DMData


class GroundTruthVersionCreate(BaseModel):
    """A version of a ground-truth dataset, with all its items: versions do not change."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ] = Field(description="Unique per dataset, e.g. `v1`")
    items: list[GroundTruthItemIn] = Field(default_factory=list, max_length=MAX_BATCH)


class TaskExportFilter(BaseModel):
    """Which tasks an export reads: a project's, optionally of one status."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: uuid.UUID
    status: TaskStatus | None = None


class AssignmentExportFilter(BaseModel):
    """Which assignments an export reads: those of a project's tasks, optionally of one
    status."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: uuid.UUID
    status: AssignmentStatus | None = None


class GroundTruthExportFilter(BaseModel):
    """Which ground-truth items an export reads: one version's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ground_truth_dataset_version: uuid.UUID


ExportFilter: TypeAlias = TaskExportFilter | AssignmentExportFilter | GroundTruthExportFilter

_FILTER_MODELS: dict[str, type[ExportFilter]] = {
    "task": TaskExportFilter,
    "assignment": AssignmentExportFilter,
    "ground_truth": GroundTruthExportFilter,
}


def parse_export_filter(target: str, value: Mapping[str, Any] | ExportFilter) -> ExportFilter:
    """The filter of an export `target`, validated for that target (raises pydantic's
    ValidationError, or ValueError for an unknown target)."""
    model = _FILTER_MODELS.get(target)
    if model is None:
        raise ValueError(f"unknown export target {target!r}: use task, assignment or ground_truth")
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return model.model_validate(value)
