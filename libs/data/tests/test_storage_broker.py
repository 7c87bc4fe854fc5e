"""The storage broker end to end: a job-side BrokeredStorage talks to a worker-side
StorageBroker over an in-memory channel (JSON on the way, as on the job's pipe), with real
storages behind it: files under the test's directory and the platform bucket on moto."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest

from runmesh.core.settings import Settings
from runmesh.core.testing import eventually
from runmesh.storage import (
    FileStorage,
    HttpStorage,
    Storage,
    StorageError,
    StorageNotFound,
    StoragePathError,
    StoragePolicyError,
    StorageScopeError,
    StorageTooLarge,
    platform_storage,
)
from runmesh.storage.broker import BrokerCallError, StorageBroker
from runmesh.storage.broker_ops import (
    MAX_BODY_BYTES,
    error_type_of,
    storage_error_from,
)
from runmesh.storage.brokered import BrokeredStorage, StorageBrokerClient

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


class LocalChannel:
    """A BrokerChannel in memory: args and results travel as JSON, errors as their fields.

    Anything but a BrokerCallError out of `handle` is a broker crash: it fails the test.
    """

    def __init__(self, broker: StorageBroker) -> None:
        self.broker = broker
        self.calls: list[tuple[str, int, int]] = []  # op, body sent, body received

    async def call(
        self, op: str, args: dict[str, Any], body: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        try:
            result, reply = await self.broker.handle(op, orjson.loads(orjson.dumps(args)), body)
        except BrokerCallError as exc:
            raise BrokerCallError(exc.error_type, exc.message, exc.details) from None
        self.calls.append((op, len(body), len(reply)))
        return orjson.loads(orjson.dumps(result)), reply

    def count(self, op: str) -> int:
        return sum(1 for called, _, _ in self.calls if called == op)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def tenant() -> str:
    return f"t{uuid4().hex[:10]}"


@pytest.fixture
async def broker(settings: Settings, tenant: str) -> AsyncIterator[StorageBroker]:
    opened = StorageBroker(tenant, settings)
    yield opened
    await opened.close()


@pytest.fixture
def channel(broker: StorageBroker) -> LocalChannel:
    return LocalChannel(broker)


@pytest.fixture
def client(channel: LocalChannel) -> StorageBrokerClient:
    # Two objects a page, so listings here take several calls.
    return StorageBrokerClient(channel, list_page=2)


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Storage]:
    """The platform bucket opened directly, as the worker does: to check behind the broker."""
    async with platform_storage(settings.s3) as storage:
        yield storage


@pytest.fixture(params=["file", "platform"])
async def opened(
    request: pytest.FixtureRequest,
    client: StorageBrokerClient,
    tenant: str,
    tmp_path: Path,
    platform: Storage,
) -> AsyncIterator[tuple[BrokeredStorage, str, Storage]]:
    """(the job's storage, the folder its tests use, the same storage opened directly)."""
    if request.param == "file":
        root = tmp_path / "root"
        async with await client.open("file", {"root": str(root)}) as storage:
            yield storage, "", FileStorage(root)
    else:
        async with await client.platform() as storage:
            yield storage, f"{tenant}/data", platform


def under(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


async def listed(storage: Storage, path: str = "", *, recursive: bool = False) -> list[str]:
    return [info.path async for info in storage.list(path, recursive=recursive)]


async def test_round_trip_through_the_broker(
    opened: tuple[BrokeredStorage, str, Storage], broker: StorageBroker, channel: LocalChannel
) -> None:
    storage, folder, direct = opened

    def at(name: str) -> str:
        return under(folder, name)

    info = await storage.write(at("docs/a.txt"), chunks(b"hello ", b"", b"world"))
    assert (info.path, info.size, info.checksum) == (at("docs/a.txt"), 11, sha(b"hello world"))
    assert info.media_type == "text/plain"
    await storage.write_bytes(at("docs/b.json"), b"{}", media_type="application/json")
    await storage.write_bytes(at("docs/sub/c.bin"), b"x" * 10)
    await storage.write_bytes(at("docs/sub.txt"), b"sub")
    results = await storage.write_many([(at("top.txt"), b"top"), (at("docs/d.txt"), b"d")])
    assert [r if isinstance(r, StorageError) else r.size for r in results] == [3, 1]

    stat = await storage.stat(at("docs/a.txt"))
    assert stat == await direct.stat(at("docs/a.txt"))
    assert stat.modified is not None and stat.modified.tzinfo is not None
    assert await direct.read_bytes(at("docs/b.json"), max_bytes=10) == b"{}"
    parts = [part async for part in storage.read(at("docs/a.txt"), chunk_size=4)]
    assert b"".join(parts) == b"hello world"
    assert all(1 <= len(part) <= 4 for part in parts)
    assert await storage.read_bytes(at("docs/sub/c.bin"), max_bytes=10) == b"x" * 10
    with pytest.raises(StorageTooLarge, match=r"c\.bin"):
        await storage.read_bytes(at("docs/sub/c.bin"), max_bytes=9)

    docs = [at(name) for name in ("docs/a.txt", "docs/b.json", "docs/d.txt", "docs/sub.txt")]
    assert await listed(storage, at("docs")) == docs
    everything = sorted([*docs, at("docs/sub/c.bin"), at("top.txt")])
    assert await listed(storage, folder, recursive=True) == everything
    assert await listed(storage, folder, recursive=True) == await listed(
        direct, folder, recursive=True
    )
    assert channel.count("list_next") >= 3  # two objects a page
    assert await listed(storage, at("nowhere"), recursive=True) == []
    assert await storage.list_dirs(folder) == ["docs"]
    assert await storage.list_dirs(at("docs")) == ["sub"]

    copied = await storage.copy(at("docs/a.txt"), at("copy/a.txt"))
    assert (copied.path, copied.size) == (at("copy/a.txt"), 11)
    assert await direct.read_bytes(at("copy/a.txt"), max_bytes=100) == b"hello world"
    assert await storage.exists(at("copy/a.txt"))
    await storage.delete(at("copy/a.txt"))
    await storage.delete(at("copy/a.txt"))  # deleting nothing is fine
    assert not await storage.exists(at("copy/a.txt"))
    assert not await direct.exists(at("copy/a.txt"))

    # Stopping early closes the listing and the stream in the worker.
    async with contextlib.aclosing(storage.list(folder, recursive=True)) as listing:
        async for _ in listing:
            break
    async with contextlib.aclosing(storage.read(at("docs/a.txt"), chunk_size=2)) as reading:
        async for _ in reading:
            break
    assert (broker.open_cursors, broker.open_streams) == (0, 0)

    for path in ("", at("docs/a b#c%.txt"), at("ünï/ç.txt")):
        assert storage.url(path) == direct.url(path)
    await storage.close()
    await storage.close()
    assert broker.open_handles == 0


@pytest.mark.slow
async def test_20_mb_stream_in_several_chunks(
    opened: tuple[BrokeredStorage, str, Storage], broker: StorageBroker, channel: LocalChannel
) -> None:
    storage, folder, direct = opened
    data = os.urandom(20_000_000)
    path = under(folder, "big/data.bin")

    info = await storage.write(path, pieces(data, 700_000))
    assert (info.size, info.checksum) == (len(data), sha(data))
    assert channel.count("write_chunk") >= 3
    assert max(sent for _, sent, _ in channel.calls) <= MAX_BODY_BYTES

    digest = hashlib.sha256()
    size = 0
    async for part in storage.read(path):
        digest.update(part)
        size += len(part)
    assert (size, f"sha256:{digest.hexdigest()}") == (len(data), sha(data))
    assert channel.count("read_next") >= 3
    assert max(received for _, _, received in channel.calls) <= MAX_BODY_BYTES

    # Beyond one body: read_bytes streams, write_bytes is sent in chunks, a huge chunk_size
    # is held to one body.
    assert await storage.read_bytes(path, max_bytes=len(data)) == data
    info = await storage.write_bytes(under(folder, "big/again.bin"), data)
    assert info.checksum == sha(data)
    parts = [
        part async for part in storage.read(under(folder, "big/again.bin"), chunk_size=1 << 30)
    ]
    assert b"".join(parts) == data and max(map(len, parts)) <= MAX_BODY_BYTES
    assert (await direct.stat(path)).size == len(data)
    assert broker.open_streams == 0


async def test_the_platform_handle_keeps_to_the_tenants_folders(
    client: StorageBrokerClient, tenant: str, platform: Storage, broker: StorageBroker
) -> None:
    other = f"o{uuid4().hex[:10]}"
    theirs = [f"{other}/secret.txt", f"runs/{other}/r1/out.txt", f"models/{other}/m/w.bin"]
    for path in theirs:
        await platform.write_bytes(path, b"theirs")
    storage = await client.platform()

    mine = [f"{tenant}/a.txt", f"runs/{tenant}/r1/a.txt", f"models/{tenant}/m/a.bin"]
    for path in mine:
        await storage.write_bytes(path, b"mine")
        assert await storage.read_bytes(path, max_bytes=10) == b"mine"
    assert await listed(storage, f"runs/{tenant}", recursive=True) == [mine[1]]
    assert await storage.list_dirs(f"models/{tenant}") == ["m"]

    outside = [*theirs, "root.txt", f"{tenant}x/a.txt", f"runs/{tenant}", f"runs/{tenant}x/a"]
    for path in outside:
        with pytest.raises(StorageScopeError):
            await storage.stat(path)
        with pytest.raises(StorageScopeError):
            await storage.read_bytes(path, max_bytes=100)
        with pytest.raises(StorageScopeError):
            _ = [part async for part in storage.read(path)]
        with pytest.raises(StorageScopeError):
            await storage.write_bytes(path, b"mine")
        with pytest.raises(StorageScopeError):
            await storage.write(path, chunks(b"x" * (2 * MiB), b"y"))
        with pytest.raises(StorageScopeError):
            await storage.delete(path)
        with pytest.raises(StorageScopeError):
            await storage.copy(path, mine[0])
        with pytest.raises(StorageScopeError):
            await storage.copy(mine[0], path)
    for folder in ("", "runs", "models", "plugins", other, f"runs/{other}", f"{tenant}x"):
        with pytest.raises(StorageScopeError):
            await listed(storage, folder)
        with pytest.raises(StorageScopeError):
            await listed(storage, folder, recursive=True)
        with pytest.raises(StorageScopeError):
            await storage.list_dirs(folder)

    for path in theirs:
        assert await platform.read_bytes(path, max_bytes=10) == b"theirs"
    assert not await platform.exists(f"{tenant}x/a.txt")
    assert (broker.open_streams, broker.open_cursors) == (0, 0)
    await storage.close()
    for path in [*theirs, *mine]:
        await platform.delete(path)


async def test_open_follows_the_operators_policy(
    client: StorageBrokerClient, broker: StorageBroker, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "escape").symlink_to("/")
    for root in ("/etc", str(tmp_path / "escape" / "etc"), f"{tmp_path}/../../../../etc"):
        with pytest.raises(StoragePolicyError) as caught:
            await client.open("file", {"root": root})
        assert (caught.value.field, caught.value.setting) == ("root", "RUNMESH_STORAGE_FILE_ROOTS")
    with pytest.raises(StoragePolicyError) as caught:
        await client.open("s3", {"bucket": "b-data", "endpoint_url": "http://127.0.0.1:1"})
    assert caught.value.field == "endpoint_url"
    with pytest.raises(StoragePolicyError) as caught:
        await client.open("s3", {"bucket": settings.s3_bucket, "prefix": "someone-else/data"})
    assert caught.value.field == "prefix"
    with pytest.raises(StorageError, match="unknown storage provider") as error:
        await client.open("ftp", {"root": "/"})
    assert type(error.value) is StorageError
    with pytest.raises(StorageError, match="field 'mode'"):
        await client.open("file", {"root": str(tmp_path), "mode": "rw"})
    assert broker.open_handles == 0


async def test_urls_match_the_workers_storages(client: StorageBrokerClient, tmp_path: Path) -> None:
    root = tmp_path / "a dir"
    async with await client.open("http", {"base_url": "https://example.com/data"}) as http:
        direct = HttpStorage("https://example.com/data")
        for path in ("", "a b/c#d?.txt", "ü.txt"):
            assert http.url(path) == direct.url(path)
        await direct.close()
    async with await client.open("file", {"root": str(root)}) as files:
        assert files.remote_scheme == "file"
        for path in ("", "a b/c#d?.txt", "ü.txt"):
            assert files.url(path) == FileStorage(root).url(path)


async def test_a_failed_or_cancelled_write_is_aborted(
    broker: StorageBroker, client: StorageBrokerClient, tmp_path: Path
) -> None:
    storage = await client.open("file", {"root": str(tmp_path)})

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * (2 * MiB)
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        await storage.write("failed.bin", failing())
    assert broker.open_streams == 0

    gate = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * (2 * MiB)
        await gate.wait()
        yield b"y"

    task = asyncio.create_task(storage.write("cancelled.bin", stalled()))
    await eventually(lambda: broker.open_streams == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker.open_streams == 0
    assert os.listdir(tmp_path) == []
    await storage.close()


async def test_errors_arrive_as_their_storage_error(
    broker: StorageBroker, client: StorageBrokerClient, tmp_path: Path
) -> None:
    storage = await client.open("file", {"root": str(tmp_path)})
    with pytest.raises(StorageNotFound) as caught:
        await storage.stat("missing.txt")
    assert type(caught.value) is StorageNotFound and "missing.txt" in str(caught.value)
    with pytest.raises(StorageNotFound):
        _ = [part async for part in storage.read("missing.txt")]
    with pytest.raises(StorageNotFound):
        await storage.read_bytes("missing.txt", max_bytes=10)
    with pytest.raises(StorageNotFound):
        await storage.copy("missing.txt", "b.txt")
    assert not await storage.exists("missing.txt")
    assert broker.open_streams == 0
    await storage.close()

    class Vanished(StorageNotFound):
        pass

    assert error_type_of(Vanished("gone")) == "StorageNotFound"
    assert type(storage_error_from(BrokerCallError("StorageScopeError", "m"))) is StorageScopeError
    assert type(storage_error_from(BrokerCallError("StoragePathError", "m"))) is StoragePathError
    made_up = storage_error_from(BrokerCallError("SystemExit", "m"))
    assert type(made_up) is StorageError and str(made_up) == "SystemExit: m"
    policy = storage_error_from(BrokerCallError("StoragePolicyError", "m"))
    assert isinstance(policy, StoragePolicyError) and policy.setting == "unknown"


async def test_many_small_files_go_in_a_few_calls_each_with_its_own_outcome(
    opened: tuple[BrokeredStorage, str, Storage], channel: LocalChannel, tenant: str
) -> None:
    storage, folder, direct = opened
    files = [
        (under(folder, f"labels/{i:05}.txt"), f"{i} 0.5 0.5 0.1 0.1\n".encode())
        for i in range(4500)
    ]
    big = (under(folder, "big.bin"), os.urandom(MAX_BODY_BYTES + 1))
    # On the platform bucket a path outside the tenant's folders fails alone.
    outside = [("elsewhere/x.txt", b"x")] if folder else []
    results = await storage.write_many([*files, big, *outside])
    assert len(results) == len(files) + 1 + len(outside)
    for (path, data), info in zip(files, results, strict=False):
        assert not isinstance(info, StorageError), info
        assert (info.path, info.size) == (path, len(data))
    assert not isinstance(results[len(files)], StorageError)
    if outside:
        assert isinstance(results[-1], StorageScopeError)
    # 4,500 label files (and the stray one) in three calls of at most 2,000; the big one
    # streamed on its own.
    assert channel.count("write_many") == 3
    assert channel.count("write_bytes") == 0
    assert await direct.read_bytes(files[-1][0], max_bytes=100) == files[-1][1]
    assert (await direct.stat(big[0])).size == len(big[1])
