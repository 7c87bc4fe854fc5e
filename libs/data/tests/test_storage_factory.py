"""Building storages from provider configs and URLs; the S3 settings reach child processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runmesh.core.settings import Settings
from runmesh.sandbox import MOTO_CREDENTIALS, Sandbox
from runmesh.storage import (
    FileStorage,
    HttpStorage,
    S3Storage,
    StorageError,
    StoragePathError,
    open_storage,
    platform_storage,
    storage_from_url,
    validate_path,
)


async def test_providers_are_built_from_their_configs(settings: Settings, tmp_path: Path) -> None:
    file = open_storage("file", {"root": str(tmp_path)}, settings.storage, tenant="t")
    assert isinstance(file, FileStorage)
    assert file.root == tmp_path

    s3 = open_storage("s3", {"bucket": "my-bucket", "prefix": "a/b/"}, settings.storage, tenant="t")
    assert isinstance(s3, S3Storage)
    assert s3.url("c.txt") == "s3://my-bucket/a/b/c.txt"

    http = open_storage(
        "http", {"base_url": "https://example.com/data"}, settings.storage, tenant="t"
    )
    assert isinstance(http, HttpStorage)
    assert http.url("x y.txt") == "https://example.com/data/x%20y.txt"
    for storage in (file, s3, http):
        await storage.close()


@pytest.mark.parametrize(
    ("provider", "config", "field"),
    [
        ("file", {}, "root"),
        ("s3", {}, "bucket"),
        ("s3", {"bucket": "Not_A_Bucket"}, "bucket"),
        ("s3", {"bucket": "ok-bucket", "prefix": "../up"}, "prefix"),
        ("s3", {"bucket": "ok-bucket", "endpoint_url": "ftp://x"}, "endpoint_url"),
        ("s3", {"bucket": "ok-bucket", "buckt": "typo"}, "buckt"),
        ("http", {"base_url": "ftp://example.com/"}, "base_url"),
        (
            "http",
            {"base_url": "https://example.com/", "allow_networks": ["nope"]},
            "allow_networks",
        ),
    ],
)
def test_bad_configs_name_the_field(
    settings: Settings, provider: str, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(StorageError, match=f"field '{field}") as raised:
        open_storage(provider, config, settings.storage, tenant="t")
    assert provider in str(raised.value)


def test_an_unknown_provider_is_refused(settings: Settings) -> None:
    with pytest.raises(StorageError, match=r"unknown storage provider 'ftp'.*file, s3, http"):
        open_storage("ftp", {}, settings.storage, tenant="t")


async def test_storages_from_urls(settings: Settings, tmp_path: Path) -> None:
    file = storage_from_url(tmp_path.as_uri(), settings.s3)
    assert isinstance(file, FileStorage) and file.root == tmp_path
    s3 = storage_from_url("s3://some-bucket/runs/42/", settings.s3)
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("some-bucket", "runs/42")
    http = storage_from_url("https://example.com/a/", settings.s3)
    assert isinstance(http, HttpStorage)
    with pytest.raises(StorageError, match="unsupported"):
        storage_from_url("gopher://x/", settings.s3)
    platform = platform_storage(settings.s3, prefix="artifacts")
    assert platform.url("x") == f"s3://{settings.s3_bucket}/artifacts/x"
    for storage in (file, s3, http, platform):
        await storage.close()


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "a/../b", "a//b", "./a", "a\\b", "a\x00b", "a\nb", ""]
)
def test_invalid_paths_name_the_path(path: str) -> None:
    with pytest.raises(StoragePathError, match="invalid storage path"):
        validate_path(path)


def test_valid_paths() -> None:
    assert validate_path("a/b.c/d e.txt") == "a/b.c/d e.txt"
    assert validate_path("..a/b..") == "..a/b.."
    assert validate_path("", directory=True) == ""
    assert validate_path("dir/", directory=True) == "dir"


def test_the_sandbox_hands_its_s3_credentials_to_child_processes(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = sandbox.settings
    env = settings.to_env()
    if sandbox.s3 is not None:
        assert settings.s3_access_key_id == MOTO_CREDENTIALS.access_key_id
        assert env["RUNMESH_S3_ACCESS_KEY_ID"] == MOTO_CREDENTIALS.access_key_id
        assert env["RUNMESH_S3_SECRET_ACCESS_KEY"] == MOTO_CREDENTIALS.secret_access_key
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert (child.s3_access_key_id, child.s3_secret_access_key, child.s3_region) == (
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
        settings.s3_region,
    )
    assert child.s3_multipart_threshold_mb == settings.s3_multipart_threshold_mb
