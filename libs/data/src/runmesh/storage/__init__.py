"""One async storage interface over files, S3 and HTTP (DESIGN §8).

`open_storage(provider, config, settings.storage, tenant=...)` builds a tenant's storage under the
operator's `StoragePolicy`, `TenantUris` opens the URIs a tenant names through its storages,
`storage_from_url` builds one from a URL the platform wrote, `platform_storage(settings.s3)` is
the platform bucket. Use a storage as `async with`; paths are relative, POSIX-style, and
validated centrally.
"""

from __future__ import annotations

from runmesh.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, Storage, validate_path
from runmesh.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StoragePathError,
    StoragePolicyError,
    StorageScopeError,
    StorageTooLarge,
    StorageUnavailable,
)
from runmesh.storage.factory import (
    PROVIDERS,
    check_storage,
    open_storage,
    platform_storage,
    storage_from_url,
)
from runmesh.storage.file import FileStorage
from runmesh.storage.http import AddressPolicy, HttpStorage, is_public_address
from runmesh.storage.policy import StoragePolicy, own_key, run_prefixes, tenant_prefixes
from runmesh.storage.s3 import S3Storage
from runmesh.storage.tenant_uris import Location, StorageRecord, TenantUris

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "PROVIDERS",
    "AddressPolicy",
    "FileStorage",
    "HttpStorage",
    "Location",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "StorageAccessDenied",
    "StorageError",
    "StorageNotFound",
    "StoragePathError",
    "StoragePolicy",
    "StoragePolicyError",
    "StorageRecord",
    "StorageScopeError",
    "StorageTooLarge",
    "StorageUnavailable",
    "TenantUris",
    "check_storage",
    "is_public_address",
    "open_storage",
    "own_key",
    "platform_storage",
    "run_prefixes",
    "storage_from_url",
    "tenant_prefixes",
    "validate_path",
]
