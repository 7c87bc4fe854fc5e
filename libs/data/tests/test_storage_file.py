"""File storage: the jail (paths, symlinks), atomic writes, special files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runmesh.storage import FileStorage, StorageNotFound, StoragePathError


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("secret")
    return directory


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[FileStorage]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "real.txt").write_text("real")
    async with FileStorage(root) as opened:
        yield opened


async def listed(storage: FileStorage, path: str = "") -> list[str]:
    return [info.path async for info in storage.list(path, recursive=True)]


async def test_a_symlink_escaping_the_root_is_refused(storage: FileStorage, outside: Path) -> None:
    (storage.root / "link.txt").symlink_to(outside / "secret.txt")

    for operation in (
        storage.stat("link.txt"),
        storage.read_bytes("link.txt", max_bytes=100),
        storage.write_bytes("link.txt", b"overwrite"),
        storage.copy("link.txt", "copy.txt"),
    ):
        with pytest.raises(StoragePathError, match="outside the storage root"):
            await operation
    assert (outside / "secret.txt").read_text() == "secret"
    assert await listed(storage) == ["real.txt"]
    await storage.delete("link.txt")  # removes the link, not its target
    assert not (storage.root / "link.txt").is_symlink()
    assert (outside / "secret.txt").exists()


async def test_a_symlinked_directory_escaping_the_root_is_refused(
    storage: FileStorage, outside: Path
) -> None:
    (storage.root / "out").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoragePathError, match="outside the storage root"):
        await storage.stat("out/secret.txt")
    with pytest.raises(StoragePathError):
        await storage.write_bytes("out/new.txt", b"x")
    with pytest.raises(StoragePathError):
        await storage.delete("out/secret.txt")
    with pytest.raises(StoragePathError):
        await listed(storage, "out")
    assert await listed(storage) == ["real.txt"]
    assert await storage.list_dirs() == []
    assert not (outside / "new.txt").exists()
    assert (outside / "secret.txt").exists()


async def test_symlinks_inside_the_root_work(storage: FileStorage) -> None:
    (storage.root / "dir").mkdir()
    (storage.root / "dir" / "file.txt").write_text("inside")
    (storage.root / "alias.txt").symlink_to(storage.root / "real.txt")
    (storage.root / "dir" / "loop").symlink_to(storage.root, target_is_directory=True)

    assert await storage.read_bytes("alias.txt", max_bytes=10) == b"real"
    assert await storage.read_bytes("dir/loop/dir/file.txt", max_bytes=10) == b"inside"
    # Listings show linked files but never descend into linked directories (no cycles).
    assert await listed(storage) == ["alias.txt", "dir/file.txt", "real.txt"]
    assert await storage.list_dirs("dir") == ["loop"]


async def test_a_failed_write_leaves_neither_file_nor_temporary(storage: FileStorage) -> None:
    await storage.write_bytes("data/kept.txt", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new" * 1_000_000
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        await storage.write("data/kept.txt", broken())
    assert await storage.read_bytes("data/kept.txt", max_bytes=10) == b"old"
    assert sorted(os.listdir(storage.root / "data")) == ["kept.txt"]


async def test_special_files_and_directories_are_not_objects(storage: FileStorage) -> None:
    os.mkfifo(storage.root / "pipe")
    (storage.root / "dir").mkdir()

    with pytest.raises(StorageNotFound, match="not a regular file"):
        await storage.stat("pipe")
    with pytest.raises(StorageNotFound, match="not a regular file"):
        await storage.read_bytes("pipe", max_bytes=10)
    with pytest.raises(StorageNotFound):
        await storage.read_bytes("dir", max_bytes=10)
    assert await listed(storage) == ["real.txt"]


async def test_the_root_is_created_by_the_first_write(tmp_path: Path) -> None:
    async with FileStorage(tmp_path / "new" / "root") as storage:
        assert await listed(storage) == []
        info = await storage.write_bytes("a/b.txt", b"hi")
    assert (tmp_path / "new" / "root" / "a" / "b.txt").read_bytes() == b"hi"
    assert info.checksum is not None
