"""The errors storage providers raise: one tree under `StorageError`, each saying if retry helps."""

from __future__ import annotations

from typing import ClassVar

from runmesh.core.errors import RunmeshError


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


class StoragePolicyError(StorageAccessDenied):
    """A storage goes against the operator's storage policy (a `RUNMESH_STORAGE_*` setting).

    `field` names the config field at fault (`root`, `endpoint_url`, `prefix`,
    `allow_private`, ...), `setting` the operator setting that decides it.
    """

    def __init__(self, message: str, *, field: str, setting: str) -> None:
        super().__init__(message)
        self.field = field
        self.setting = setting

    def naming(self, what: str) -> StoragePolicyError:
        """The same refusal with `what` (the storage at fault) in front of its message."""
        return StoragePolicyError(f"{what}: {self}", field=self.field, setting=self.setting)


class StorageScopeError(StorageAccessDenied):
    """A URI lies outside every storage of the run's tenant and the tenant's own folders of the
    platform bucket: it is not read, whoever wrote it into the catalog or the params."""


def retriable(exc: BaseException) -> bool:
    """Whether `exc` is a storage failure that trying again may cure (for `retried`)."""
    return isinstance(exc, StorageError) and exc.retriable
