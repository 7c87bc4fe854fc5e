"""Read-only objects under an HTTP(S) base URL that refuses private network targets (SSRF).

The address checks and the guarded transport are in `http_guard`; this module is the
storage: requests with redirects and retries, and what the responses' headers state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from runmesh.core.retries import retried
from runmesh.storage.base import (
    ObjectInfo,
    Storage,
    format_checksum,
)
from runmesh.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    retriable,
)
from runmesh.storage.http_guard import (
    AddressPolicy,
    GuardedTransport,
    IPAddress,
    IPNetwork,
    is_public_address,
)

# The guard's names stay importable from here, where they were first defined.
__all__ = ["AddressPolicy", "HttpStorage", "IPAddress", "IPNetwork", "is_public_address"]

_logger = logging.getLogger("runmesh.storage")

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_NO_HEAD = frozenset({405, 501})
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DIGEST_SHA256 = re.compile(r"sha-256=:?([A-Za-z0-9+/]+=*):?", re.IGNORECASE)


def _checksum(headers: httpx.Headers) -> str | None:
    """A SHA-256 the server states: S3's `x-amz-meta-sha256`, or `Repr-Digest`/`Digest`."""
    digest = headers.get("x-amz-meta-sha256")
    if digest and _HEX_SHA256.fullmatch(digest):
        return format_checksum(digest.lower())
    for name in ("repr-digest", "digest"):
        match = _DIGEST_SHA256.search(headers.get(name, ""))
        if match:
            try:
                raw = base64.b64decode(match.group(1), validate=True)
            except binascii.Error:
                continue
            if len(raw) == 32:
                return format_checksum(raw.hex())
    return None


def _modified(headers: httpx.Headers) -> datetime | None:
    value = headers.get("last-modified")
    if not value:
        return None
    try:
        modified = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return modified if modified.tzinfo else modified.replace(tzinfo=UTC)


class HttpStorage(Storage):
    """Read-only objects at `base_url` + path: `stat` is a HEAD, `read` a streamed GET.

    Connections go only to public addresses unless `allow_private` (or the address is in
    `allow_networks`): every address a host name resolves to is checked when connecting,
    for the first request and for every redirect hop (followed here, at most
    `max_redirects`, http and https only). Requests that fail with a connection error,
    429 or 5xx are retried with backoff. Proxy variables are ignored (`trust_env=False`),
    so a proxy cannot be used to reach what the check refuses. `list`, `write`, `copy` and
    `delete` are refused.
    """

    scheme = "http"

    def __init__(
        self,
        base_url: str,
        *,
        allow_private: bool = False,
        allow_networks: Iterable[IPNetwork | str] = (),
        timeout_s: float = 30.0,
        max_redirects: int = 5,
        max_attempts: int = 3,
        max_connections: int = 8,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise StorageError(f"invalid HTTP storage base URL {base_url!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise StorageError(f"HTTP storage base URL {base_url!r} must be http(s)://host/...")
        if url.userinfo or url.query or url.fragment:
            raise StorageError(
                f"HTTP storage base URL {base_url!r} must not contain credentials, a query or "
                "a fragment"
            )
        self._base = str(url) if str(url).endswith("/") else f"{url}/"
        self._policy = AddressPolicy(allow_private=allow_private, allow_networks=allow_networks)
        self._timeout_s = timeout_s
        self._max_redirects = max_redirects
        self._max_attempts = max_attempts
        self._max_connections = max_connections
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def base_url(self) -> str:
        """The base URL, ending in "/"."""
        return self._base

    def __repr__(self) -> str:
        return f"HttpStorage({self._base!r})"

    async def close(self) -> None:
        """Close the HTTP client. Safe to call twice."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _get_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=GuardedTransport(self._policy, max_connections=self._max_connections),
                follow_redirects=False,
                timeout=httpx.Timeout(self._timeout_s),
                trust_env=False,
                # Sizes and checksums describe the stored bytes, not a compressed transfer.
                headers={"Accept-Encoding": "identity", "User-Agent": "runmesh-storage"},
            )
        return self._client

    async def _follow(self, method: str, url: str) -> httpx.Response:
        """Send `method url`, following redirects hop by hop; the response is open."""
        client = self._get_client()
        request = client.build_request(method, url)
        for _ in range(self._max_redirects + 1):
            if request.url.scheme not in ("http", "https"):
                raise StorageAccessDenied(f"{url}: refusing a redirect to {request.url}")
            try:
                async with asyncio.timeout(self._timeout_s):
                    response = await client.send(request, stream=True)
            except (httpx.TransportError, TimeoutError) as exc:
                raise StorageUnavailable(f"{method} {request.url}: {exc!r}") from exc
            except httpx.HTTPError as exc:
                raise StorageError(f"{method} {request.url}: {exc}") from exc
            if not response.is_redirect or response.next_request is None:
                return response
            request = response.next_request
            await response.aclose()
            _logger.debug("%s %s redirects to %s", method, url, request.url)
        raise StorageError(f"{url}: more than {self._max_redirects} redirects")

    async def _open(
        self, method: str, path: str, *, passthrough: frozenset[int] = frozenset()
    ) -> httpx.Response:
        """An open 2xx response (or one with a `passthrough` status) to `method` on `path`,
        asked again with backoff while the server is unreachable or answers 429 or 5xx."""
        url = self._url(path)
        return await retried(
            f"http_storage.{method.lower()}",
            lambda: self._open_once(method, url, passthrough),
            on=retriable,
            attempts=self._max_attempts,
        )

    async def _open_once(
        self, method: str, url: str, passthrough: frozenset[int]
    ) -> httpx.Response:
        response = await self._follow(method, url)
        if response.status_code in passthrough:
            return response
        try:
            self._raise_for_status(response, url)
        except BaseException:
            await response.aclose()
            raise
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (404, 410):
            raise StorageNotFound(f"{url} does not exist (HTTP {status})")
        if status in (401, 403):
            raise StorageAccessDenied(f"{url}: access denied (HTTP {status})")
        if status in _RETRY_STATUS:
            raise StorageUnavailable(f"{url}: server unavailable (HTTP {status})")
        raise StorageError(f"{url}: unexpected HTTP {status}")

    def _info(self, path: str, response: httpx.Response) -> ObjectInfo | None:
        length = response.headers.get("content-length")
        if length is None or not length.isdigit():
            return None
        content_type = response.headers.get("content-type")
        return ObjectInfo(
            path=path,
            size=int(length),
            checksum=_checksum(response.headers),
            media_type=content_type.split(";")[0].strip() if content_type else None,
            modified=_modified(response.headers),
        )

    # -- provider hooks ---------------------------------------------------------------------

    def _list(self, path: str, recursive: bool) -> AsyncGenerator[ObjectInfo, None]:
        raise StorageError(f"{self._base}: HTTP storage cannot list directories")

    async def _list_dirs(self, path: str) -> builtins.list[str]:
        raise StorageError(f"{self._base}: HTTP storage cannot list directories")

    async def _stat(self, path: str) -> ObjectInfo:
        # Servers that do not do HEAD (405, 501) or omit the length there: GET's headers.
        response = await self._open("HEAD", path, passthrough=_NO_HEAD)
        async with contextlib.aclosing(response):
            info = None if response.status_code in _NO_HEAD else self._info(path, response)
        if info is not None:
            return info
        response = await self._open("GET", path)
        async with contextlib.aclosing(response):
            info = self._info(path, response)
        if info is None:
            raise StorageError(f"{self._url(path)}: the server does not state the size")
        return info

    async def _read(self, path: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        response = await self._open("GET", path)
        try:
            async for chunk in response.aiter_bytes(chunk_size):
                yield chunk
        except httpx.TransportError as exc:
            raise StorageUnavailable(f"reading {self._url(path)} failed: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise StorageError(f"reading {self._url(path)} failed: {exc}") from exc
        finally:
            await response.aclose()

    def _read_only(self, path: str) -> StorageAccessDenied:
        return StorageAccessDenied(f"{self._url(path)}: HTTP storage is read-only")

    async def _write(
        self, path: str, chunks: AsyncIterable[bytes], media_type: str | None
    ) -> ObjectInfo:
        raise self._read_only(path)

    async def _copy(self, src: str, dst: str) -> ObjectInfo:
        raise self._read_only(dst)

    async def _delete(self, path: str) -> None:
        raise self._read_only(path)

    def _url(self, path: str) -> str:
        return self._base + quote(path)
