"""The storage broker under hostile calls: malformed arguments, unknown ids, oversized bodies,
too many handles, streams and cursors; `close()` while everything is open; no platform secret
nor traceback in a reply. The calls go straight to `StorageBroker.handle`, as a job's pipe
delivers them, against real file storages under the test's directory."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import SecretStr

from runmesh.core.settings import Settings
from runmesh.storage import FileStorage, StorageError
from runmesh.storage.broker import BrokerCallError, StorageBroker
from runmesh.storage.broker_ops import (
    INTERNAL_ERROR,
    MAX_BODY_BYTES,
    MAX_CURSORS,
    MAX_ERROR_CHARS,
    MAX_HANDLES,
    MAX_STREAMS,
    REQUEST_ERROR,
)
from runmesh.storage.brokered import StorageBrokerClient

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


class Direct:
    """The simplest BrokerChannel: each call goes straight to the broker."""

    def __init__(self, broker: StorageBroker) -> None:
        self.broker = broker

    async def call(
        self, op: str, args: dict[str, Any], body: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        return await self.broker.handle(op, args, body)


async def refused(broker: StorageBroker, op: Any, args: Any, body: bytes = b"") -> BrokerCallError:
    """The BrokerCallError `broker` answers a raw call with (Any: hostile input)."""
    with pytest.raises(BrokerCallError) as caught:
        await broker.handle(op, args, body)
    return caught.value


@pytest.fixture
def tenant() -> str:
    return f"t{uuid4().hex[:10]}"


@pytest.fixture
async def broker(settings: Settings, tenant: str) -> AsyncIterator[StorageBroker]:
    opened = StorageBroker(tenant, settings)
    yield opened
    await opened.close()


async def test_malformed_calls_are_refused_and_the_broker_goes_on(
    broker: StorageBroker, tmp_path: Path
) -> None:
    result, _ = await broker.handle(
        "open", {"provider": "file", "config": {"root": str(tmp_path)}}, b""
    )
    handle = result["handle"]
    await broker.handle("write_bytes", {"handle": handle, "path": "a.txt"}, b"a")
    result, _ = await broker.handle("write_open", {"handle": handle, "path": "w.bin"}, b"")
    writing = result["stream"]
    unknown = 10**9
    big_root = {"root": "x" * 100_000}
    requests: list[tuple[Any, Any, bytes]] = [
        ("nope", {}, b""),
        ("x" * 100_000, {}, b""),
        (None, {}, b""),
        ("stat", {"handle": handle, "path": "a.txt", "extra": 1}, b""),
        ("stat", {"handle": -1, "path": "a.txt"}, b""),
        ("stat", {"handle": 0, "path": "a.txt"}, b""),
        ("stat", {"handle": str(handle), "path": "a.txt"}, b""),
        ("stat", {"handle": True, "path": "a.txt"}, b""),
        ("stat", {"handle": 2**70, "path": "a.txt"}, b""),
        ("stat", {"handle": unknown, "path": "a.txt"}, b""),
        ("stat", {"handle": handle}, b""),
        ("stat", [handle, "a.txt"], b""),
        ("stat", None, b""),
        ("stat", {"handle": handle, "path": 5}, b""),
        ("stat", {"handle": handle, "path": "a" * 5000}, b""),
        ("stat", {"handle": handle, "path": "\ud800"}, b""),
        ("stat", {"handle": handle, "path": "a.txt"}, b"unexpected body"),
        ("write_bytes", {"handle": handle, "path": "b.txt"}, b"x" * (MAX_BODY_BYTES + 1)),
        ("write_bytes", {"handle": handle, "path": "b.txt", "media_type": "x" * 1000}, b"x"),
        ("write_many", {"handle": handle, "paths": ["c.txt"], "sizes": [2]}, b"x"),
        ("write_many", {"handle": handle, "paths": ["c.txt", "d.txt"], "sizes": [1]}, b"x"),
        ("write_many", {"handle": handle, "paths": ["c.txt"], "sizes": [-1]}, b""),
        ("write_many", {"handle": handle, "paths": [], "sizes": []}, b""),
        ("write_many", {"handle": handle, "paths": ["e"] * 2001, "sizes": [0] * 2001}, b""),
        ("read_open", {"handle": handle, "path": "a.txt", "chunk_size": 0}, b""),
        ("read_open", {"handle": handle, "path": "a.txt", "chunk_size": MAX_BODY_BYTES + 1}, b""),
        ("read_bytes", {"handle": handle, "path": "a.txt", "max_bytes": -1}, b""),
        ("list", {"handle": handle, "limit": 0}, b""),
        ("list", {"handle": handle, "limit": 10**6}, b""),
        ("list", {"handle": handle, "recursive": "yes"}, b""),
        ("read_next", {"stream": unknown}, b""),
        ("read_next", {"stream": writing}, b""),  # a write stream is no read stream
        ("read_close", {"stream": writing}, b""),
        ("write_chunk", {"stream": unknown}, b"x"),
        ("write_close", {"stream": unknown}, b""),
        ("write_abort", {"stream": unknown}, b""),
        ("list_next", {"cursor": writing}, b""),
        ("list_close", {"cursor": unknown}, b""),
        ("close", {"handle": unknown}, b""),
        ("open", {}, b""),
        ("open", {"platform": False}, b""),
        ("open", {"provider": "file"}, b""),
        ("open", {"platform": True, "provider": "file", "config": {}}, b""),
        ("open", {"provider": "file", "config": big_root}, b""),
        ("open", {"provider": "file", "config": {"root": "\ud800"}}, b""),
        ("open", {"provider": "p" * 100, "config": {}}, b""),
    ]
    for op, args, body in requests:
        error = await refused(broker, op, args, body)
        assert error.error_type == REQUEST_ERROR, (op, args, error)
        assert len(error.message) <= MAX_ERROR_CHARS
    # Reached the storage: its own errors, by name.
    for args, error_type in [
        ({"handle": handle, "path": "../etc/passwd"}, "StoragePathError"),
        ({"handle": handle, "path": "/etc/passwd"}, "StoragePathError"),
        ({"handle": handle, "path": "missing.txt"}, "StorageNotFound"),
    ]:
        assert (await refused(broker, "stat", args)).error_type == error_type
    nested = {"provider": "file", "config": {"root": {"a": [[[[]]]]}}}
    assert (await refused(broker, "open", nested)).error_type == "StorageError"

    # The broker goes on: the write stream still takes data, the file is still there.
    await broker.handle("write_chunk", {"stream": writing}, b"data")
    result, _ = await broker.handle("write_close", {"stream": writing}, b"")
    assert result["info"]["size"] == 4
    _, body = await broker.handle(
        "read_bytes", {"handle": handle, "path": "a.txt", "max_bytes": 9}, b""
    )
    assert body == b"a"
    await broker.handle("close", {"handle": handle}, b"")
    assert (broker.open_handles, broker.open_streams, broker.open_cursors) == (0, 0, 0)


async def test_handles_streams_and_cursors_are_bounded(
    broker: StorageBroker, tmp_path: Path
) -> None:
    config = {"provider": "file", "config": {"root": str(tmp_path)}}
    handles = [(await broker.handle("open", config, b""))[0]["handle"] for _ in range(MAX_HANDLES)]
    assert "too many open storages" in (await refused(broker, "open", config)).message
    await broker.handle("close", {"handle": handles.pop()}, b"")
    handles.append((await broker.handle("open", config, b""))[0]["handle"])

    first, second = handles[0], handles[1]
    for name in ("a.txt", "b.txt"):
        await broker.handle("write_bytes", {"handle": first, "path": name}, b"data")
    read = {"handle": first, "path": "a.txt", "chunk_size": 1}
    streams = [
        (await broker.handle("read_open", read, b""))[0]["stream"] for _ in range(MAX_STREAMS)
    ]
    assert "too many open" in (await refused(broker, "read_open", read)).message
    write = {"handle": second, "path": "c.txt"}
    assert "too many open" in (await refused(broker, "write_open", write)).message
    await broker.handle("read_close", {"stream": streams.pop()}, b"")
    stream = (await broker.handle("write_open", write, b""))[0]["stream"]
    await broker.handle("write_abort", {"stream": stream}, b"")

    listing = {"handle": second, "path": "nothing", "limit": 1}
    for _ in range(MAX_CURSORS):
        page, _ = await broker.handle("list", listing, b"")
        assert page["cursor"] is None  # an empty directory: nothing to keep open
    await broker.handle("write_bytes", {"handle": second, "path": "x/1.txt"}, b"1")
    await broker.handle("write_bytes", {"handle": second, "path": "x/2.txt"}, b"2")
    listing = {"handle": second, "path": "x", "limit": 1}
    for _ in range(MAX_CURSORS):
        page, _ = await broker.handle("list", listing, b"")
        assert page["cursor"] is not None and len(page["items"]) == 1
    assert "too many open listings" in (await refused(broker, "list", listing)).message
    assert (broker.open_streams, broker.open_cursors) == (MAX_STREAMS - 1, MAX_CURSORS)

    # Closing a handle ends what it opened.
    await broker.handle("close", {"handle": first}, b"")
    await broker.handle("close", {"handle": second}, b"")
    assert (broker.open_handles, broker.open_streams, broker.open_cursors) == (
        MAX_HANDLES - 2,
        0,
        0,
    )


async def test_close_abandons_everything(broker: StorageBroker, tmp_path: Path) -> None:
    client = StorageBrokerClient(Direct(broker), list_page=2)
    storage = await client.open("file", {"root": str(tmp_path)})
    bucket = await client.platform()
    await storage.write_bytes("big.bin", b"x" * (3 * MiB))
    for name in ("1.txt", "2.txt", "3.txt"):
        await storage.write_bytes(name, b"n")
    reading = storage.read("big.bin", chunk_size=1024)
    assert len(await anext(reading)) == 1024
    listing = storage.list("")
    await anext(listing)
    result, _ = await broker.handle(
        "write_open", {"handle": 1, "path": "partial.bin"}, b""
    )  # handle 1: the file storage, the first this broker opened
    await broker.handle("write_chunk", {"stream": result["stream"]}, b"part")
    assert (broker.open_handles, broker.open_streams, broker.open_cursors) == (2, 2, 1)

    await broker.close()
    assert (broker.open_handles, broker.open_streams, broker.open_cursors) == (0, 0, 0)
    assert sorted(os.listdir(tmp_path)) == ["1.txt", "2.txt", "3.txt", "big.bin"]
    with pytest.raises(StorageError, match="closed"):
        await anext(reading)
    with pytest.raises(StorageError, match="closed"):
        await storage.stat("1.txt")
    error = await refused(broker, "stat", {"handle": 1, "path": "1.txt"})
    assert error.error_type == REQUEST_ERROR
    await reading.aclose()
    await listing.aclose()
    await storage.close()
    await bucket.close()
    await broker.close()


async def test_replies_carry_no_platform_secret_nor_traceback(
    settings: Settings,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"S3cret{uuid4().hex}"
    # moto takes any keys: the platform's secret key is one a test chooses.
    keyed = settings.model_copy(update={"s3_secret_access_key": SecretStr(secret)})
    broker = StorageBroker(tenant, keyed)
    try:
        result, _ = await broker.handle(
            "open", {"provider": "file", "config": {"root": str(tmp_path)}}, b""
        )
        handle = result["handle"]
        error = await refused(broker, "stat", {"handle": handle, "path": f"dir/{secret}.txt"})
        assert error.error_type == "StorageNotFound"
        assert secret not in error.message and "***" in error.message

        async def broken(self: FileStorage, path: str) -> None:
            raise RuntimeError(f"boom {secret}")

        monkeypatch.setattr(FileStorage, "_stat", broken)
        with caplog.at_level(logging.ERROR, logger="runmesh.storage.broker"):
            error = await refused(broker, "stat", {"handle": handle, "path": "a.txt"})
        assert error.error_type == INTERNAL_ERROR
        assert "boom" not in error.message and "Traceback" not in error.message
        [record] = [r for r in caplog.records if r.name == "runmesh.storage.broker"]
        assert record.exc_info is not None and "boom" in str(record.exc_info[1])
    finally:
        await broker.close()
