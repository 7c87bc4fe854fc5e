"""Read-only objects under an HTTP(S) base URL that refuses private network targets (SSRF)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpcore
import httpx

from runmesh.common.storage.base import (
    ObjectInfo,
    Storage,
    backoff_delay,
    format_checksum,
)
from runmesh.common.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
)

_logger = logging.getLogger("runmesh.storage")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that embed an IPv4 address the packet really goes to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_NO_HEAD = frozenset({405, 501})
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DIGEST_SHA256 = re.compile(r"sha-256=:?([A-Za-z0-9+/]+=*):?", re.IGNORECASE)


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), else `address` itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_public_address(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address (the only kind allowed by default).

    Refused: private, loopback, link-local (169.254.169.254, the cloud metadata address,
    included), multicast, reserved, unspecified, shared (100.64/10), site-local, and IPv6
    addresses that embed one of those (IPv4-mapped, NAT64, 6to4).
    """
    address = _embedded_ipv4(address)
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global


class AddressPolicy:
    """Which addresses a connection may go to: public ones, plus what is explicitly allowed."""

    def __init__(
        self, *, allow_private: bool = False, allow_networks: Iterable[IPNetwork | str] = ()
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = tuple(ipaddress.ip_network(net) for net in allow_networks)

    def allows(self, address: IPAddress) -> bool:
        """Whether a connection to `address` is allowed."""
        if self.allow_private or is_public_address(address):
            return True
        plain = _embedded_ipv4(address)
        return any(plain in network for network in self.allow_networks)

    async def resolve(self, host: str, port: int, timeout_s: float | None) -> list[str]:
        """The addresses of `host` to connect to; StorageAccessDenied if any is not allowed.

        Every address must be allowed: a name that also resolves to an internal address is
        refused, whichever address a connection would have used.
        """
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(timeout_s or 10.0):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
            except OSError as exc:  # socket.gaierror
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
            addresses = []
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
                if address not in addresses:
                    addresses.append(address)
        for address in addresses:
            if not self.allows(address):
                raise StorageAccessDenied(
                    f"refusing to connect to {host} ({address}): not a public address "
                    "(private, loopback, link-local, multicast or reserved); allow it with "
                    "allow_private or allow_networks"
                )
        return [str(address) for address in addresses]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that checks every connection's address as it connects.

    Checking at connect time, on the very address connected to, leaves no gap for DNS
    rebinding (a name resolving to a public address when checked and to a private one
    when used), and covers every redirect hop and pooled connection.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,  # Any: httpcore's socket option tuples
    ) -> httpcore.AsyncNetworkStream:
        """Resolve `host`, check its addresses, connect to the first that answers."""
        failure: Exception | None = None
        for address in await self._policy.resolve(host, port, timeout):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host!r} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,  # Any: as above
    ) -> httpcore.AsyncNetworkStream:
        """Refused: HTTP storage only goes to checked TCP addresses."""
        raise StorageAccessDenied(f"refusing to connect to the unix socket {path}")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the wrapped backend does."""
        await self._inner.sleep(seconds)


_CORE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
_CORE_BASES = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise httpcore's errors as httpx's, as httpx's own transport does."""
    try:
        yield
    except _CORE_BASES as exc:
        for core, mapped in _CORE_ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpx_errors():
                await close()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport over an httpcore pool whose connections go through `_GuardedBackend`."""

    def __init__(self, policy: AddressPolicy, *, max_connections: int) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the guarded pool."""
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the guarded transport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):
            raise TypeError("the guarded transport got a sync response body")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()


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
                transport=_GuardedTransport(self._policy, max_connections=self._max_connections),
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
        """An open 2xx response (or one with a `passthrough` status) to `method` on `path`."""
        url = self._url(path)
        attempt = 1
        while True:
            try:
                response = await self._follow(method, url)
            except StorageError as exc:
                if not exc.retriable or attempt >= self._max_attempts:
                    raise
                problem: str = str(exc)
            else:
                status = response.status_code
                if status in passthrough:
                    return response
                if status not in _RETRY_STATUS or attempt >= self._max_attempts:
                    try:
                        self._raise_for_status(response, url)
                    except BaseException:
                        await response.aclose()
                        raise
                    return response
                problem = f"HTTP {status}"
                await response.aclose()
            delay = backoff_delay(attempt)
            _logger.info(
                "%s %s failed (%s); retry %d in %.2fs", method, url, problem, attempt, delay
            )
            await asyncio.sleep(delay)
            attempt += 1

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
