"""Open the storage a data unit's file URI points into, one client per bucket or host."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from runmesh.common.settings import Settings
from runmesh.common.storage.base import Storage
from runmesh.common.storage.errors import StorageError
from runmesh.common.storage.file import FileStorage
from runmesh.common.storage.http import HttpStorage
from runmesh.common.storage.s3 import S3Storage


def open_uri(
    sources: dict[tuple[str, str], Storage], uri: str, settings: Settings
) -> tuple[Storage, str]:
    """The storage holding `uri` (cached in `sources`) and the object's path in it.

    URIs come from the catalog, written by the upload service: `s3://bucket/key`,
    `file:///abs/path` or `http(s)://host/path` (read with the private-address guard on).
    """
    parts = urlsplit(uri)
    path = unquote(parts.path).lstrip("/")
    if not path:
        raise StorageError(f"{uri!r} names no file")
    key = (parts.scheme, parts.netloc)
    storage = sources.get(key)
    if storage is None:
        if parts.scheme == "s3":
            storage = S3Storage.from_settings(settings, bucket=parts.netloc)
        elif parts.scheme == "file":
            storage = FileStorage(Path("/"))
        elif parts.scheme in ("http", "https"):
            storage = HttpStorage(f"{parts.scheme}://{parts.netloc}/")
        else:
            raise StorageError(f"{uri!r}: unsupported URI scheme {parts.scheme!r}")
        sources[key] = storage
    return storage, path
