"""Resolve a URI a tenant named (a data unit's file, a dataset, a model's weights) through the
tenant's own storages: what lies outside them is never opened.

A URI is read only when it lies inside one of the run's tenant's storages (the longest match
wins) or in the platform bucket under that tenant's own folders (`<tenant>/`, `runs/<tenant>/`,
`models/<tenant>/`: what upload, train and the other services write there). Anything else,
another tenant's folder of the platform bucket or a host path, is a StorageScopeError, and each
storage is opened under the operator's policy (`open_storage`).
"""

from __future__ import annotations

import logging
import os
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from runmesh.core.settings_parts import StorageSettings
from runmesh.storage.base import Storage, validate_path
from runmesh.storage.errors import StoragePathError, StorageScopeError
from runmesh.storage.factory import check_storage, open_storage, platform_storage
from runmesh.storage.policy import tenant_prefixes

_logger = logging.getLogger("runmesh.storage")


class StorageRecord(Protocol):
    """What resolving needs of a tenant's storage (a catalog `StorageRow` is one)."""

    @property
    def id(self) -> uuid.UUID:
        """The storage's id."""
        ...

    @property
    def name(self) -> str:
        """The storage's name."""
        ...

    @property
    def provider(self) -> str:
        """`file`, `s3` or `http`."""
        ...

    @property
    def config(self) -> Mapping[str, Any]:  # Any: the provider's stored JSON config
        """The provider's config as stored."""
        ...


@dataclass(slots=True, frozen=True)
class Location:
    """Where a URI points: a storage of the tenant (None: the platform bucket) and the path."""

    storage: StorageRecord | None
    path: str


def _inside(path: str, root: str) -> str | None:
    """`path` relative to the directory `root` ("" for the root itself), or None if outside."""
    root = root.rstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return None


class TenantUris:
    """Opens the URIs of one tenant: `storage, path = uris.open(uri)`; `close()` at the end.

    Args:
        tenant: The run's tenant (`RunContext.tenant`), whose storages these are.
        storages: Every storage of the tenant (`catalog.tenant_uris` reads them).
        storage: The platform's S3 settings (its bucket) and the operator's storage policy.
    """

    def __init__(
        self, tenant: str, storages: Iterable[StorageRecord], storage: StorageSettings
    ) -> None:
        self.tenant = tenant
        self._settings = storage
        self._storages = list(storages)
        self._platform_prefixes = tenant_prefixes(tenant)
        # A file storage's root as written and as the host resolves it (symlinks): a URI
        # written by a FileStorage carries the resolved one.
        self._file_roots: list[tuple[StorageRecord, str]] = []
        for record in self._storages:
            if record.provider == "file" and isinstance(record.config.get("root"), str):
                root = str(record.config["root"])
                for form in {posixpath.normpath(root), os.path.realpath(root)}:
                    self._file_roots.append((record, form))
        self._opened: dict[uuid.UUID | None, Storage] = {}

    @property
    def opened(self) -> list[Storage]:
        """The storages opened so far (closed by `close`)."""
        return list(self._opened.values())

    def locate(self, uri: str, *, directory: bool = False) -> Location:
        """The storage and path `uri` names (a folder's with `directory`, "" for a storage's
        root); StorageScopeError when it lies outside the tenant's storages and folders.
        Nothing is opened or read."""
        parts = urlsplit(uri)
        try:
            if parts.scheme == "file":
                found = self._file(parts.netloc, unquote(parts.path), directory)
            elif parts.scheme == "s3":
                found = self._s3(parts.netloc, unquote(parts.path), directory)
            elif parts.scheme in ("http", "https"):
                found = self._http(uri, directory)
            else:
                raise StorageScopeError(f"{uri}: unsupported URI scheme {parts.scheme!r}")
        except StoragePathError as exc:
            raise StorageScopeError(f"{uri}: {exc}") from None
        if found is None:
            raise StorageScopeError(
                f"{uri} lies in no storage of tenant {self.tenant!r}"
                + (
                    f" nor in its folders of the platform bucket ({self._folders()})"
                    if parts.scheme == "s3"
                    else ""
                )
                + ": register a storage that holds it (POST /v1/storages)"
            )
        return found

    def check(self, uri: str) -> Location:
        """`locate`, and the storage found checked against the operator's policy (what the
        gateway refuses when a URI is registered); nothing is opened."""
        location = self.locate(uri)
        if location.storage is not None:
            record = location.storage
            check_storage(record.provider, record.config, self._settings, tenant=self.tenant)
        return location

    def open(self, uri: str, *, directory: bool = False) -> tuple[Storage, str]:
        """The storage holding `uri` (opened once, then reused) and the object's path in it
        (the folder's, without a trailing "/", with `directory`).

        StorageScopeError outside the tenant's storages and folders, StoragePolicyError when
        the storage goes against the operator's policy, StorageError for a bad config.
        """
        location = self.locate(uri, directory=directory)
        key = location.storage.id if location.storage is not None else None
        storage = self._opened.get(key)
        if storage is None:
            if location.storage is None:
                storage = platform_storage(self._settings.s3)
            else:
                record = location.storage
                storage = open_storage(
                    record.provider, record.config, self._settings, tenant=self.tenant
                )
            self._opened[key] = storage
        return storage, location.path

    async def close(self) -> None:
        """Close every storage opened; one that fails to close is logged, not raised."""
        opened, self._opened = list(self._opened.values()), {}
        for storage in opened:
            try:
                await storage.close()
            except Exception:
                _logger.warning("closing %r failed", storage, exc_info=True)

    # -- matching ----------------------------------------------------------------------------

    def _folders(self) -> str:
        bucket = self._settings.s3.bucket
        return ", ".join(f"s3://{bucket}/{prefix}" for prefix in self._platform_prefixes) or (
            "none"
        )

    def _file(self, host: str, path: str, directory: bool) -> Location | None:
        if host not in ("", "localhost"):
            raise StoragePathError(f"file URIs name a local path (file:///...), not host {host!r}")
        best: tuple[int, Location] | None = None
        for storage, root in self._file_roots:
            relative = _inside(path, root)
            if relative is not None and (best is None or len(root) > best[0]):
                best = (len(root), Location(storage, validate_path(relative, directory=directory)))
        return best[1] if best is not None else None

    def _s3(self, bucket: str, path: str, directory: bool) -> Location | None:
        key = validate_path(path.removeprefix("/"), directory=directory)
        # The platform's folders first: that is where the platform itself writes.
        if bucket == self._settings.s3.bucket and any(
            key.startswith(prefix) for prefix in self._platform_prefixes
        ):
            return Location(None, key)
        best: tuple[int, Location] | None = None
        for storage in self._storages:
            config = storage.config
            if storage.provider != "s3" or config.get("bucket") != bucket:
                continue
            prefix = str(config.get("prefix") or "").strip("/")
            relative = _inside(key, prefix) if prefix else key
            if (relative or (directory and relative == "")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), Location(storage, relative))
        return best[1] if best is not None else None

    def _http(self, uri: str, directory: bool) -> Location | None:
        parts = urlsplit(uri)
        bare = f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"
        best: tuple[int, Location] | None = None
        for storage in self._storages:
            base = storage.config.get("base_url")
            if storage.provider != "http" or not isinstance(base, str):
                continue
            base_parts = urlsplit(base)
            base = f"{base_parts.scheme}://{base_parts.netloc.lower()}{base_parts.path}"
            relative = _inside(bare, base)
            if relative is not None and (best is None or len(base) > best[0]):
                path = validate_path(unquote(relative), directory=directory)
                best = (len(base), Location(storage, path))
        return best[1] if best is not None else None
