"""Validation of what users create in the catalog: storage configs and file specifications."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from runmesh.catalog import (
    DataCollectionCreate,
    FileStorageConfig,
    HttpStorageConfig,
    S3StorageConfig,
    parse_storage_config,
)
from runmesh.catalog.models import STORAGE_CREATE, FileStorageCreate, S3StorageCreate
from runmesh.catalog.repository import FileSpecification
from runmesh.core.db import load_migrations


def locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [tuple(error["loc"]) for error in exc.value.errors()]


def test_the_catalog_migrations_ship_with_the_package() -> None:
    migrations = load_migrations("runmesh.catalog")
    assert migrations[0].name == "0001_catalog.sql"
    assert "CREATE TABLE IF NOT EXISTS catalog.data_units" in migrations[0].sql


def test_a_storage_is_validated_by_its_provider() -> None:
    storage = STORAGE_CREATE.validate_python(
        {"name": " photos ", "provider": "s3", "config": {"bucket": "a.b-c", "prefix": "//x/"}}
    )
    assert isinstance(storage, S3StorageCreate)
    assert storage.name == "photos"
    assert storage.config == S3StorageConfig(bucket="a.b-c", prefix="x/")
    assert isinstance(
        STORAGE_CREATE.validate_python(
            {"name": "f", "provider": "file", "config": {"root": "/srv"}}
        ),
        FileStorageCreate,
    )
    with pytest.raises(ValidationError) as exc:
        STORAGE_CREATE.validate_python({"name": "f", "provider": "s3", "config": {"root": "/a"}})
    assert set(locs(exc)) == {("s3", "config", "bucket"), ("s3", "config", "root")}


@pytest.mark.parametrize(
    "bucket",
    ["ab", "A-bucket", "bucket_", "-bucket", "bucket-", "a..b", "a.-b", "10.0.0.1", "xn--abc",
     "name-s3alias", "a" * 64],
)  # fmt: skip
def test_s3_bucket_names_follow_the_s3_rules(bucket: str) -> None:
    with pytest.raises(ValidationError) as exc:
        S3StorageConfig(bucket=bucket)
    assert locs(exc) == [("bucket",)]


@pytest.mark.parametrize("bucket", ["abc", "my.data-2024", "0" * 63, "10.0.0.1.x"])
def test_valid_s3_bucket_names(bucket: str) -> None:
    assert S3StorageConfig(bucket=bucket).bucket == bucket


def test_file_roots_are_absolute_and_urls_http() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        FileStorageConfig(root="relative/dir")
    with pytest.raises(ValidationError, match="NUL"):
        FileStorageConfig(root="/a\x00b")
    for url in ("ftp://host/", "https://", "example.com/x", "http://h/#frag"):
        with pytest.raises(ValidationError):
            HttpStorageConfig(base_url=url)
    assert HttpStorageConfig(base_url="http://10.0.0.2:8080/data").allow_private is False
    with pytest.raises(ValidationError):
        S3StorageConfig(bucket="abc", endpoint_url="localhost:9000")


def test_parse_storage_config_reads_a_stored_config() -> None:
    assert parse_storage_config("file", {"root": "/x"}) == FileStorageConfig(root="/x")
    with pytest.raises(ValueError, match="unknown storage provider"):
        parse_storage_config("ftp", {})


def spec(**changes: Any) -> dict[str, Any]:
    return {"name": "image", "extensions": [".jpg"], "is_primary": True} | changes


def test_extensions_are_normalised_and_deduplicated() -> None:
    collection = DataCollectionCreate.model_validate(
        {"name": "c", "file_specifications": [spec(extensions=["JPG", " .Jpeg ", "jpg", "NII.GZ"])]}
    )
    [only] = collection.file_specifications
    assert only.extensions == [".jpg", ".jpeg", ".nii.gz"]
    assert only.required is True
    row = FileSpecification(only.name, only.required, tuple(only.extensions), only.is_primary)
    assert FileSpecification.from_json(row.to_json()) == row


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "at least 1"),
        ([spec(), spec(is_primary=False)], "'image' repeats"),
        ([spec(), spec(name="other")], "at most one may be primary"),
        ([spec(required=False)], "must be required"),
        ([spec(extensions=[".j pg"])], "is not a file extension"),
        ([spec(extensions=["."])], "is not a file extension"),
        ([spec(name="a/b")], "pattern"),
    ],
)
def test_invalid_file_specifications(specs: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DataCollectionCreate.model_validate({"name": "c", "file_specifications": specs})


def test_no_primary_is_allowed_and_the_meta_schema_must_be_storable() -> None:
    collection = DataCollectionCreate.model_validate(
        {"name": "c", "file_specifications": [spec(is_primary=False, required=False)]}
    )
    assert not collection.file_specifications[0].is_primary
    with pytest.raises(ValidationError, match="NUL"):
        DataCollectionCreate.model_validate(
            {
                "name": "c",
                "file_specifications": [spec()],
                "data_unit_meta_schema": {"title": "a\x00"},
            }
        )
