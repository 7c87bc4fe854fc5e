"""The operator's storage policy: where a tenant's storage may point, set by `RUNMESH_STORAGE_*`.

Tenants name storages; the operator decides what such a name may reach. The gateway checks a
storage against this policy when it is created (a 422 naming the field and the setting) and
every worker checks it again each time it opens one, as a storage can reach the catalog
without the gateway (an old row, a request straight on Kafka).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runmesh.core.settings_parts import StorageSettings
from runmesh.storage.base import validate_path
from runmesh.storage.errors import StoragePathError, StoragePolicyError

FILE_ROOTS_SETTING = "RUNMESH_STORAGE_FILE_ROOTS"
S3_ENDPOINTS_SETTING = "RUNMESH_STORAGE_S3_ENDPOINTS"
HTTP_PRIVATE_SETTING = "RUNMESH_STORAGE_HTTP_ALLOW_PRIVATE"
PLATFORM_BUCKET_SETTING = "RUNMESH_S3_BUCKET"

# Top-level folders of the platform bucket that the platform keeps per tenant. A tenant named
# like one of them owns no bare `<tenant>/` folder: it would span every tenant's.
PLATFORM_FOLDERS = frozenset({"runs", "models", "plugins"})
# A tenant name that is one plain path segment; any other owns no folder of the platform bucket.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def tenant_prefixes(tenant: str) -> tuple[str, ...]:
    """The key prefixes of the platform bucket that hold `tenant`'s objects, each ending in "/":
    its uploads (`<tenant>/`), its runs' files (`runs/<tenant>/`) and models (`models/<tenant>/`).
    """
    if not _SEGMENT.fullmatch(tenant) or ".." in tenant:
        return ()
    own = (f"runs/{tenant}/", f"models/{tenant}/")
    return own if tenant in PLATFORM_FOLDERS else (f"{tenant}/", *own)


def run_prefixes(tenant: str, run_ids: Iterable[uuid.UUID]) -> tuple[str, ...]:
    """The key prefixes of the platform bucket that hold the files of the runs `run_ids`
    (`runs/<tenant>/<run>/`, `models/<tenant>/<run>/`): where a run writes its artifacts."""
    if not tenant_prefixes(tenant):
        return ()
    return tuple(f"{kind}/{tenant}/{run_id}/" for run_id in run_ids for kind in ("runs", "models"))


def own_key(uri: str, bucket: str, prefixes: Sequence[str]) -> str | None:
    """The key of `uri` in the platform bucket if it lies under one of `prefixes`, else None:
    how a URI a run or a tenant named is checked before the platform reads it.

    S3 URIs carry their key as is (`S3Storage.url`), so it is not unquoted."""
    root = f"s3://{bucket}/"
    if not uri.startswith(root):
        return None
    try:
        key = validate_path(uri[len(root) :])
    except StoragePathError:
        return None  # `..`, `//`: never a key the platform wrote
    return key if any(key.startswith(prefix) for prefix in prefixes) else None


def _endpoint_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an endpoint URL with no path, credentials or query; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def _endpoint_pattern(url: str) -> tuple[str, re.Pattern[str], int] | None:
    """(scheme, host regex, port) of an allow-list entry; `*` stands for one DNS label."""
    key = _endpoint_key(url)
    if key is None:
        return None
    scheme, host, port = key
    return scheme, re.compile(re.escape(host).replace(r"\*", "[a-z0-9-]+")), port


@dataclass(slots=True, frozen=True)
class StoragePolicy:
    """What tenants' storages may reach (see `Settings.storage_*`)."""

    file_roots: tuple[str, ...]
    s3_endpoints: tuple[str, ...]
    http_allow_private: bool
    platform_endpoint: str | None
    platform_bucket: str

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> StoragePolicy:
        """The policy the operator set, around the platform's own endpoint and bucket."""
        return cls(
            file_roots=tuple(str(root) for root in storage.policy.file_roots),
            s3_endpoints=storage.policy.s3_endpoints,
            http_allow_private=storage.policy.http_allow_private,
            platform_endpoint=storage.s3.endpoint_url,
            platform_bucket=storage.s3.bucket,
        )

    # -- file --------------------------------------------------------------------------------

    def allowed_file_roots(self, tenant: str) -> list[Path]:
        """The directories `tenant`'s file storages may be rooted under, symlinks resolved."""
        roots: list[Path] = []
        for root in self.file_roots:
            if "{tenant}" in root:
                if not tenant_prefixes(tenant):
                    continue  # a tenant name that is no plain path segment fills in nothing
                root = root.replace("{tenant}", tenant)
            roots.append(Path(os.path.realpath(Path(root).expanduser())))
        return roots

    def file_root(self, root: str | Path, tenant: str) -> Path:
        """The real directory of a `file` storage's `root` (symlinks and `..` resolved);
        StoragePolicyError unless it lies under one of the operator's allowed roots."""
        real = Path(os.path.realpath(Path(root).expanduser()))
        allowed = self.allowed_file_roots(tenant)
        if any(real.is_relative_to(directory) for directory in allowed):
            return real
        shown = ", ".join(self.file_roots) or "none: no file storages"
        raise StoragePolicyError(
            f"file storage root {str(root)!r} (resolved: {real}) is not under a directory "
            f"the operator allows for file storages ({FILE_ROOTS_SETTING}: {shown})",
            field="root",
            setting=FILE_ROOTS_SETTING,
        )

    # -- s3 ----------------------------------------------------------------------------------

    def is_platform_endpoint(self, endpoint_url: str | None) -> bool:
        """Whether `endpoint_url` (None: RUNMESH_S3_ENDPOINT_URL) is the platform's S3."""
        if endpoint_url is None or endpoint_url == self.platform_endpoint:
            return True
        if self.platform_endpoint is None:
            return False
        key = _endpoint_key(endpoint_url)
        return key is not None and key == _endpoint_key(self.platform_endpoint)

    def _listed(self, endpoint_url: str) -> bool:
        key = _endpoint_key(endpoint_url)
        if key is None:
            return False
        for allowed in self.s3_endpoints:
            pattern = _endpoint_pattern(allowed)
            if (
                pattern is not None
                and (pattern[0], pattern[2]) == (key[0], key[2])
                and pattern[1].fullmatch(key[1])
            ):
                return True
        return False

    def s3(self, *, bucket: str, prefix: str, endpoint_url: str | None, tenant: str) -> bool:
        """Check an `s3` storage; True when it is in the platform bucket (under the tenant's own
        prefix), which the platform's key may sign. StoragePolicyError otherwise refused."""
        if not self.is_platform_endpoint(endpoint_url):
            assert endpoint_url is not None
            if not self._listed(endpoint_url):
                listed = ", ".join(self.s3_endpoints) or "none"
                raise StoragePolicyError(
                    f"S3 endpoint {endpoint_url!r} is neither the platform's nor on the "
                    f"operator's list ({S3_ENDPOINTS_SETTING}: {listed}); private, loopback "
                    "and link-local endpoints are refused unless the operator lists them",
                    field="endpoint_url",
                    setting=S3_ENDPOINTS_SETTING,
                )
            return False
        if bucket != self.platform_bucket:
            return False
        folder = prefix.strip("/") + "/"
        own = tenant_prefixes(tenant)
        if not any(folder.startswith(allowed) for allowed in own):
            shown = ", ".join(own) or "none"
            raise StoragePolicyError(
                f"bucket {bucket!r} is the platform's ({PLATFORM_BUCKET_SETTING}): a storage "
                f"in it must have a prefix in the tenant's own folders ({shown}), not "
                f"{prefix!r}",
                field="prefix",
                setting=PLATFORM_BUCKET_SETTING,
            )
        return True

    # -- http --------------------------------------------------------------------------------

    def http(self, *, allow_private: bool, allow_networks: Sequence[object]) -> None:
        """Check an `http` storage: `allow_private` and `allow_networks` need the operator's
        consent (StoragePolicyError without it)."""
        if self.http_allow_private:
            return
        for field, asked in (("allow_private", allow_private), ("allow_networks", allow_networks)):
            if asked:
                raise StoragePolicyError(
                    f"{field} is refused: the operator does not let storages reach private, "
                    f"loopback or link-local hosts ({HTTP_PRIVATE_SETTING} is off)",
                    field=field,
                    setting=HTTP_PRIVATE_SETTING,
                )
