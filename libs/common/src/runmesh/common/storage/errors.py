"""The errors storage providers raise: one tree under `StorageError`, each saying if retry helps."""

from __future__ import annotations

from typing import ClassVar

from runmesh.common.errors import RunmeshError


class StorageError(RunmeshError):
    """A storage operation failed; the message names the object (URL or path) at fault."""

    retriable: ClassVar[bool] = False


class StorageNotFound(StorageError):
    """The object (or bucket) does not exist, or the path names something that is not a file."""


class StoragePathError(StorageError):
    """A path is malformed (empty segment, `..`, absolute, backslash, NUL) or escapes the root."""


class StorageAccessDenied(StorageError):
    """Refused: credentials, a private network target, or a write to read-only storage."""


class StorageUnavailable(StorageError):
    """The storage could not be reached or kept failing (network, throttling, 5xx) after retries."""

    retriable = True


class StorageTooLarge(StorageError):
    """An object is larger than the caller (or the provider's limits) allows."""
