"""Params of the upload action (the Synapse upload contract: single-path or multi-path)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AssetPath(BaseModel):
    """Where one file specification's files are, in multi-path mode."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="Folder in the source storage")
    is_recursive: bool = Field(default=True, description="Also look in subfolders")


class UploadParams(BaseModel):
    """Upload files from a storage into the platform and register them as data units."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name of this upload")
    description: str | None = Field(default=None, max_length=2000)
    storage: uuid.UUID = Field(description="Source storage id (catalog)")
    data_collection: uuid.UUID = Field(description="Data collection the units belong to")
    path: str | None = Field(
        default=None,
        description="Single-path mode: folder holding one subfolder per file specification "
        "(or the files themselves, matched to specifications by extension)",
    )
    assets: dict[str, AssetPath] | None = Field(
        default=None, description="Multi-path mode: {specification name: {path, is_recursive}}"
    )
    is_recursive: bool = Field(default=True, description="Single-path mode: look in subfolders")
    excel_metadata_path: str | None = Field(
        default=None,
        description=".xlsx in the source storage: first column = file stem, header row = "
        "meta keys (storage-relative, or relative to `path`)",
    )
    max_file_size_mb: float = Field(default=50, gt=0, le=100_000)
    creating_data_unit_batch_size: int = Field(default=100, ge=1, le=10_000)
    max_concurrency: int = Field(default=8, ge=1, le=64, description="Files uploaded at once")
    destination: uuid.UUID | None = Field(
        default=None, description="Destination storage id; unset = the platform bucket"
    )

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _one_mode(self) -> UploadParams:
        if (self.path is None) == (self.assets is None):
            raise ValueError("give either `path` (single-path mode) or `assets` (multi-path)")
        if self.assets is not None and not self.assets:
            raise ValueError("`assets` must name at least one file specification")
        return self

    @property
    def max_file_bytes(self) -> int:
        """`max_file_size_mb` in bytes."""
        return int(self.max_file_size_mb * 1024 * 1024)
