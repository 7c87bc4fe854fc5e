"""One async storage interface over files, S3 and HTTP (DESIGN §8).

`open_storage(provider, config, settings)` builds one from a validated config,
`storage_from_url` from a URL, `platform_storage(settings)` is the platform bucket. Use a
storage as `async with`; paths are relative, POSIX-style, and validated centrally.
"""

from __future__ import annotations

from runmesh.common.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, Storage, validate_path
from runmesh.common.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StoragePathError,
    StorageTooLarge,
    StorageUnavailable,
)
from runmesh.common.storage.factory import (
    PROVIDERS,
    open_storage,
    platform_storage,
    storage_from_url,
)
from runmesh.common.storage.file import FileStorage
from runmesh.common.storage.http import AddressPolicy, HttpStorage, is_public_address
from runmesh.common.storage.s3 import S3Storage

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "PROVIDERS",
    "AddressPolicy",
    "FileStorage",
    "HttpStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "StorageAccessDenied",
    "StorageError",
    "StorageNotFound",
    "StoragePathError",
    "StorageTooLarge",
    "StorageUnavailable",
    "is_public_address",
    "open_storage",
    "platform_storage",
    "storage_from_url",
    "validate_path",
]
