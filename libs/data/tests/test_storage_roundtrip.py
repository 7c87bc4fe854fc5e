"""Every writable storage provider (file, S3 on moto) through the same round trip."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from runmesh.core.settings import Settings
from runmesh.storage import (
    FileStorage,
    S3Storage,
    Storage,
    StorageError,
    StorageNotFound,
    StoragePathError,
    StorageTooLarge,
)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture(params=["file", "s3"])
async def storage(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[Storage]:
    if request.param == "file":
        opened: Storage = FileStorage(tmp_path / "root")
    else:
        opened = S3Storage.from_settings(settings.s3, prefix=f"t-{uuid4().hex[:10]}/data")
    async with opened:
        yield opened


async def paths(storage: Storage, path: str = "", *, recursive: bool = False) -> list[str]:
    return [info.path async for info in storage.list(path, recursive=recursive)]


async def test_write_stat_read_list_copy_delete(storage: Storage) -> None:
    info = await storage.write("docs/a.txt", chunks(b"hello ", b"", b"world"))
    assert (info.path, info.size, info.checksum) == ("docs/a.txt", 11, sha(b"hello world"))
    assert info.media_type == "text/plain"
    await storage.write_bytes("docs/b.json", b"{}", media_type="application/json")
    await storage.write_bytes("docs/sub/c.bin", b"x" * 10)
    await storage.write_bytes("docs/sub.txt", b"sub")  # sorts before "docs/sub/..."
    await storage.write_bytes("top.txt", b"top")

    stat = await storage.stat("docs/a.txt")
    assert (stat.path, stat.size, stat.media_type) == ("docs/a.txt", 11, "text/plain")
    assert stat.modified is not None and stat.modified.tzinfo is not None
    if isinstance(storage, S3Storage):
        assert stat.checksum == sha(b"hello world")
        assert (await storage.stat("docs/b.json")).media_type == "application/json"
    pieces = [piece async for piece in storage.read("docs/a.txt", chunk_size=4)]
    assert b"".join(pieces) == b"hello world"
    assert all(1 <= len(piece) <= 4 for piece in pieces)
    assert await storage.read_bytes("docs/sub/c.bin", max_bytes=10) == b"x" * 10
    with pytest.raises(StorageTooLarge, match=r"c\.bin"):
        await storage.read_bytes("docs/sub/c.bin", max_bytes=9)

    assert await paths(storage) == ["top.txt"]
    assert await paths(storage, "docs") == ["docs/a.txt", "docs/b.json", "docs/sub.txt"]
    assert await paths(storage, "docs/") == ["docs/a.txt", "docs/b.json", "docs/sub.txt"]
    everything = ["docs/a.txt", "docs/b.json", "docs/sub.txt", "docs/sub/c.bin", "top.txt"]
    assert await paths(storage, recursive=True) == everything
    assert await paths(storage, "docs/sub", recursive=True) == ["docs/sub/c.bin"]
    assert [i.size async for i in storage.list("docs")] == [11, 2, 3]
    assert await paths(storage, "nowhere", recursive=True) == []
    assert await storage.list_dirs() == ["docs"]
    assert await storage.list_dirs("docs") == ["sub"]
    assert await storage.list_dirs("docs/sub") == []

    copied = await storage.copy("docs/a.txt", "copies/a.txt")
    assert (copied.path, copied.size) == ("copies/a.txt", 11)
    assert await storage.read_bytes("copies/a.txt", max_bytes=100) == b"hello world"
    if isinstance(storage, S3Storage):
        assert copied.checksum == sha(b"hello world")

    await storage.write_bytes("docs/a.txt", b"replaced")
    assert await storage.read_bytes("docs/a.txt", max_bytes=100) == b"replaced"
    await storage.delete("docs/a.txt")
    assert not await storage.exists("docs/a.txt")
    await storage.delete("docs/a.txt")  # missing: no error
    assert await storage.exists("copies/a.txt")


async def test_missing_objects_are_not_found(storage: Storage) -> None:
    with pytest.raises(StorageNotFound, match=r"missing\.txt"):
        await storage.stat("dir/missing.txt")
    with pytest.raises(StorageNotFound, match=r"missing\.txt"):
        await storage.read_bytes("dir/missing.txt", max_bytes=10)
    with pytest.raises(StorageNotFound):
        await storage.copy("dir/missing.txt", "elsewhere.txt")


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "a/../../x", "a//b", "a/./b", "a\\b", "a\x00b", "a/", ""]
)
async def test_bad_paths_are_refused_by_every_operation(storage: Storage, path: str) -> None:
    with pytest.raises(StoragePathError, match="invalid storage path"):
        await storage.stat(path)
    with pytest.raises(StoragePathError):
        await storage.write_bytes(path, b"x")
    with pytest.raises(StoragePathError):
        await storage.delete(path)
    with pytest.raises(StoragePathError):
        storage.read(path)
    if path not in ("", "a/"):  # the root and "dir/" are valid directories
        with pytest.raises(StoragePathError):
            storage.list(path)


async def test_urls(storage: Storage, settings: Settings) -> None:
    if isinstance(storage, FileStorage):
        assert storage.url("a b/c.txt") == (storage.root / "a b" / "c.txt").as_uri()
        assert storage.url("a b/c.txt").startswith("file:///")
    else:
        assert isinstance(storage, S3Storage)
        assert storage.url("a/c.txt") == f"s3://{settings.s3_bucket}/{storage.prefix}/a/c.txt"


async def test_write_many_stores_every_file_and_reports_each_failure(storage: Storage) -> None:
    files = [(f"labels/{i:04d}.txt", f"{i} 0.5 0.5 0.1 0.1\n".encode()) for i in range(1205)]
    await storage.write_bytes("blocker", b"a file where a folder is wanted")
    outcomes = await storage.write_many([*files, ("blocker/x.txt", b"x")], concurrency=8)
    *written, refused = outcomes
    assert [(o.path, o.size, o.checksum) for o in written] == [  # type: ignore[union-attr]
        (path, len(data), sha(data)) for path, data in files
    ]
    if isinstance(storage, FileStorage):  # S3 has no folders: the key is just another key
        assert isinstance(refused, StorageError)
    assert len(await paths(storage, "labels")) == len(files)
    assert await storage.read_bytes("labels/1204.txt", max_bytes=100) == files[-1][1]
    with pytest.raises(StoragePathError):
        await storage.write_many([("../escape.txt", b"x")])


async def test_write_many_leaves_no_temporary_file(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    await storage.write_many([(f"d/{i}.txt", b"x") for i in range(10)])
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [f"{i}.txt" for i in range(10)]
