"""HTTP storage against a local server: reads, redirects, retries and the SSRF guard."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runmesh.storage import (
    HttpStorage,
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    is_public_address,
)

BIG = bytes(range(256)) * 12_000  # ~3 MB
HELLO = b"hello over http"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    flaky_calls = 0

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_HEAD(self) -> None:
        self.respond(body=False)

    def do_GET(self) -> None:
        self.respond(body=True)

    def send(self, status: int, content: bytes, body: bool, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(content)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if body:
            self.wfile.write(content)

    def redirect(self, location: str) -> None:
        self.send(302, b"", False, Location=location)

    def respond(self, body: bool) -> None:
        path = self.path
        if path == "/data/hello.txt":
            self.send(
                200,
                HELLO,
                body,
                Content_Type="text/plain; charset=utf-8",
                Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT",
                x_amz_meta_sha256=hashlib.sha256(HELLO).hexdigest(),
            )
        elif path == "/data/big%20file.bin":
            self.send(200, BIG, body, Content_Type="application/octet-stream")
        elif path == "/data/nohead.txt":
            if not body:
                self.send(405, b"", False)
            else:
                self.send(200, b"get only", True)
        elif path == "/data/to-hello":
            self.redirect("/data/hello.txt")
        elif path == "/data/to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/data/to-ipv6-loopback":
            self.redirect(f"http://[::1]:{self.server.server_address[1]}/data/hello.txt")
        elif path == "/data/to-file":
            self.redirect("file:///etc/passwd")
        elif path == "/data/loop":
            self.redirect("/data/loop")
        elif path == "/data/flaky":
            Handler.flaky_calls += 1
            if Handler.flaky_calls % 2:
                self.send(503, b"busy", body)
            else:
                self.send(200, b"recovered", body)
        elif path == "/data/forbidden":
            self.send(403, b"no", body)
        else:
            self.send(404, b"not found", body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_stat_and_read_with_private_addresses_allowed(server: str) -> None:
    async with HttpStorage(f"http://{server}/data", allow_private=True) as storage:
        info = await storage.stat("hello.txt")
        assert (info.path, info.size, info.media_type) == ("hello.txt", len(HELLO), "text/plain")
        assert info.checksum == f"sha256:{hashlib.sha256(HELLO).hexdigest()}"
        assert info.modified is not None and info.modified.year == 2015
        assert await storage.read_bytes("hello.txt", max_bytes=100) == HELLO

        assert storage.url("big file.bin") == f"http://{server}/data/big%20file.bin"
        assert (await storage.stat("big file.bin")).size == len(BIG)
        pieces = [piece async for piece in storage.read("big file.bin", chunk_size=1 << 20)]
        assert b"".join(pieces) == BIG
        assert max(len(piece) for piece in pieces) <= 1 << 20

        assert (await storage.stat("nohead.txt")).size == len(b"get only")
        assert await storage.read_bytes("to-hello", max_bytes=100) == HELLO  # a redirect
        assert await storage.read_bytes("flaky", max_bytes=100) == b"recovered"  # a retried 503


async def test_a_host_name_is_resolved_and_its_addresses_tried(server: str) -> None:
    port = server.rpartition(":")[2]
    # "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
    async with HttpStorage(f"http://localhost:{port}/data/", allow_private=True) as storage:
        assert await storage.read_bytes("hello.txt", max_bytes=100) == HELLO


async def test_http_errors_are_typed(server: str) -> None:
    async with HttpStorage(f"http://{server}/data/", allow_private=True) as storage:
        with pytest.raises(StorageNotFound, match=r"missing\.txt"):
            await storage.stat("missing.txt")
        with pytest.raises(StorageNotFound, match=r"missing\.txt"):
            await storage.read_bytes("missing.txt", max_bytes=100)
        with pytest.raises(StorageAccessDenied, match="403"):
            await storage.stat("forbidden")
        with pytest.raises(StorageError, match="redirects"):
            await storage.stat("loop")
        with pytest.raises(StorageAccessDenied, match="redirect"):
            await storage.stat("to-file")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:9/",
        "http://[::1]:9/",
        "http://169.254.169.254/latest/",
        "http://10.0.0.1/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:9/",
        "http://localhost:9/",
    ],
)
async def test_private_targets_are_refused_by_default(base_url: str) -> None:
    async with HttpStorage(base_url) as storage:
        with pytest.raises(StorageAccessDenied, match="not a public address") as raised:
            await storage.stat("x")
        assert not raised.value.retriable
        with pytest.raises(StorageAccessDenied, match="not a public address"):
            await storage.read_bytes("x", max_bytes=10)


async def test_a_redirect_to_a_private_address_is_refused(server: str) -> None:
    # Only the test server's own address is allowed; the redirect targets are not.
    async with HttpStorage(f"http://{server}/data/", allow_networks=["127.0.0.1/32"]) as storage:
        assert await storage.read_bytes("hello.txt", max_bytes=100) == HELLO
        with pytest.raises(StorageAccessDenied, match=r"169\.254\.169\.254"):
            await storage.read_bytes("to-metadata", max_bytes=100)
        with pytest.raises(StorageAccessDenied, match=r"\[?::1"):
            await storage.stat("to-ipv6-loopback")


async def test_http_storage_is_read_only_and_cannot_list(server: str) -> None:
    async with HttpStorage(f"http://{server}/data/", allow_private=True) as storage:
        with pytest.raises(StorageAccessDenied, match="read-only"):
            await storage.write_bytes("new.txt", b"x")
        with pytest.raises(StorageAccessDenied, match="read-only"):
            await storage.copy("hello.txt", "copy.txt")
        with pytest.raises(StorageAccessDenied, match="read-only"):
            await storage.delete("hello.txt")
        with pytest.raises(StorageError, match="cannot list"):
            storage.list()
        with pytest.raises(StorageError, match="cannot list"):
            await storage.list_dirs()


async def test_a_server_that_does_not_answer_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = HttpStorage(f"http://127.0.0.1:{port}/", allow_private=True, max_attempts=2)
    async with storage:
        with pytest.raises(StorageUnavailable, match="ConnectError") as raised:
            await storage.stat("x")
    assert raised.value.retriable


@pytest.mark.parametrize("base_url", ["ftp://host/", "http:///nohost", "http://u:p@host/", "x"])
def test_bad_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(StorageError, match="base URL"):
        HttpStorage(base_url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),
        ("2002:a00:1::", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
