"""The SSRF guard of HTTP storage: which addresses a connection may go to, and an httpx
transport whose every connection is checked on the address it really connects to."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from runmesh.storage.errors import StorageAccessDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that embed an IPv4 address the packet really goes to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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


class GuardedTransport(httpx.AsyncBaseTransport):
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
