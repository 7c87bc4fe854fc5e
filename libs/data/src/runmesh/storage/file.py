"""Files under one root directory, jailed: no path and no symlink leads outside the root."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ctypes
import errno
import logging
import os
import secrets
import stat
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BufferedWriter
from pathlib import Path

from runmesh.storage.base import (
    ObjectInfo,
    Storage,
    StreamHasher,
    guess_media_type,
    join_path,
    validate_path,
)
from runmesh.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StoragePathError,
)

_logger = logging.getLogger("runmesh.storage")

# Writes go to a hidden sibling first; listings skip such names.
_TEMP_PREFIX = ".runmesh-tmp-"
# Small chunks are gathered up to this size before one trip to a worker thread writes them.
_WRITE_BATCH_BYTES = 1 << 20
_WRITE_MANY_BATCH = 1000  # files per thread hop in write_many


@dataclass(slots=True, frozen=True)
class _Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float
    link: bool  # a symlink whose target lies inside the root


def _sort_key(entry: _Entry) -> str:
    # "dir/" sorts where the directory's files do, so a depth-first walk yields paths in the
    # same order as sorting them whole (and as S3 lists keys).
    return f"{entry.name}/" if entry.is_dir else entry.name


def _valid_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        validate_path(name)
    except (UnicodeEncodeError, StoragePathError):
        return False
    return True


class FileStorage(Storage):
    """Objects are the regular files under `root`.

    Every path is resolved (symlinks included) and refused with StoragePathError when it
    leads outside the root; symlinks inside the root that point inside it work. Listings
    skip symlinks that leave the root and never descend into symlinked directories (which
    also rules out cycles). Writes go to a temporary file in the target's directory, are
    fsynced and renamed over the target, so readers see the old or the new file, never a
    part. Blocking I/O runs in worker threads, chunk by chunk. `stat` and listings do not
    hash files: their `checksum` is None (`write` returns it).

    The checks run before each operation; someone who can create symlinks inside the root
    at the same time could still race them (opening the final file with O_NOFOLLOW narrows
    that to intermediate directories).
    """

    scheme = "file"

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root).expanduser().resolve()

    @property
    def root(self) -> Path:
        """The resolved root directory."""
        return self._root

    def __repr__(self) -> str:
        return f"FileStorage({str(self._root)!r})"

    # -- blocking helpers (worker threads) -----------------------------------------------

    def _locate(self, path: str) -> Path:
        """The resolved absolute path of `path`; StoragePathError when it leaves the root."""
        candidate = self._root.joinpath(*path.split("/")) if path else self._root
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            raise StoragePathError(f"cannot resolve {self._url(path)}: {exc}") from exc
        if not resolved.is_relative_to(self._root):
            raise StoragePathError(
                f"storage path {path!r} leads outside the storage root {self._root}"
            )
        return resolved

    def _error(self, exc: OSError, path: str) -> StorageError:
        where = self._url(path)
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return StorageNotFound(f"{where} does not exist")
        if isinstance(exc, IsADirectoryError):
            return StorageNotFound(f"{where} is a directory, not a file")
        if isinstance(exc, PermissionError):
            return StorageAccessDenied(f"{where}: permission denied")
        if exc.errno == errno.ELOOP:
            return StoragePathError(f"{where} became a symlink while it was being opened")
        return StorageError(f"{where}: {exc.strerror or exc}")

    def _info(self, path: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            path=path,
            size=st.st_size,
            checksum=None,
            media_type=guess_media_type(path),
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _stat_blocking(self, path: str) -> ObjectInfo:
        target = self._locate(path)
        try:
            st = target.stat()
        except OSError as exc:
            raise self._error(exc, path) from exc
        if not stat.S_ISREG(st.st_mode):
            raise StorageNotFound(f"{self._url(path)} is not a regular file")
        return self._info(path, st)

    def _open_for_read(self, path: str) -> int:
        target = self._locate(path)
        # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(target, flags)
        except OSError as exc:
            raise self._error(exc, path) from exc
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            os.close(fd)
            raise self._error(exc, path) from exc
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise StorageNotFound(f"{self._url(path)} is not a regular file")
        return fd

    def _read_chunk(self, fd: int, size: int, path: str) -> bytes:
        try:
            return os.read(fd, size)
        except OSError as exc:
            raise self._error(exc, path) from exc

    def _create_temp(self, path: str) -> tuple[Path, Path, BufferedWriter]:
        target = self._locate(path)
        try:
            if target.is_dir():
                raise StorageError(f"{self._url(path)} is a directory; cannot write a file there")
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(f"a parent of {self._url(path)} is a file, not a directory") from exc
        except OSError as exc:
            raise self._error(exc, path) from exc
        # Narrows the window for a directory swapped for a symlink since `_locate`.
        if not target.parent.resolve().is_relative_to(self._root):
            raise StoragePathError(
                f"storage path {path!r} leads outside the storage root {self._root}"
            )
        temp = target.parent / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o666)  # the umask applies, as for any new file
        except OSError as exc:
            raise self._error(exc, path) from exc
        return target, temp, os.fdopen(fd, "wb")

    def _write_chunk(
        self, handle: BufferedWriter, hasher: StreamHasher, chunk: bytes, path: str
    ) -> None:
        try:
            handle.write(chunk)
        except OSError as exc:
            raise self._error(exc, path) from exc
        hasher.update_blocking(chunk)

    def _commit(self, handle: BufferedWriter, temp: Path, target: Path, path: str) -> ObjectInfo:
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(temp, target)
            st = target.stat()
        except OSError as exc:
            raise self._error(exc, path) from exc
        _fsync_directory(target.parent)
        return self._info(path, st)

    def _delete_blocking(self, path: str) -> None:
        parent_path, _, name = path.rpartition("/")
        target = self._locate(parent_path) / name  # the entry itself: a symlink is unlinked
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, path) from exc
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{self._url(path)} is a directory; delete removes files only")
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, path) from exc

    def _scan(self, directory: Path, path: str) -> builtins.list[_Entry]:
        """The entries of `directory` that a listing shows, sorted; [] when it is missing."""
        try:
            iterator = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._error(exc, path) from exc
        entries: list[_Entry] = []
        with iterator:
            for entry in iterator:
                if entry.name.startswith(_TEMP_PREFIX) or not _valid_name(entry.name):
                    continue
                try:
                    link = entry.is_symlink()
                    if link:
                        target = Path(entry.path).resolve()
                        if not target.is_relative_to(self._root):
                            _logger.debug("listing skips %s: it leads outside the root", entry.path)
                            continue
                        st = target.stat()
                    else:
                        st = entry.stat(follow_symlinks=False)
                except (OSError, RuntimeError):
                    continue  # vanished meanwhile, a dangling link or a symlink loop
                if stat.S_ISDIR(st.st_mode):
                    entries.append(_Entry(entry.name, True, 0, st.st_mtime, link))
                elif stat.S_ISREG(st.st_mode):
                    entries.append(_Entry(entry.name, False, st.st_size, st.st_mtime, link))
        entries.sort(key=_sort_key)
        return entries

    # -- provider hooks -----------------------------------------------------------------

    async def _list(self, path: str, recursive: bool) -> AsyncGenerator[ObjectInfo, None]:
        directory = await asyncio.to_thread(self._locate, path)
        async for info in self._walk(directory, path, recursive):
            yield info

    async def _walk(
        self, directory: Path, path: str, recursive: bool
    ) -> AsyncGenerator[ObjectInfo, None]:
        for entry in await asyncio.to_thread(self._scan, directory, path):
            child = join_path(path, entry.name)
            if not entry.is_dir:
                yield ObjectInfo(
                    path=child,
                    size=entry.size,
                    checksum=None,
                    media_type=guess_media_type(entry.name),
                    modified=datetime.fromtimestamp(entry.mtime, UTC),
                )
            elif recursive and not entry.link:
                async for info in self._walk(directory / entry.name, child, recursive):
                    yield info

    async def _list_dirs(self, path: str) -> builtins.list[str]:
        directory = await asyncio.to_thread(self._locate, path)
        entries = await asyncio.to_thread(self._scan, directory, path)
        return [entry.name for entry in entries if entry.is_dir]

    async def _stat(self, path: str) -> ObjectInfo:
        return await asyncio.to_thread(self._stat_blocking, path)

    async def _read(self, path: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        fd = await asyncio.to_thread(self._open_for_read, path)
        try:
            while chunk := await asyncio.to_thread(self._read_chunk, fd, chunk_size, path):
                yield chunk
        finally:
            os.close(fd)

    async def _write(
        self, path: str, chunks: AsyncIterable[bytes], media_type: str | None
    ) -> ObjectInfo:
        target, temp, handle = await asyncio.to_thread(self._create_temp, path)
        hasher = StreamHasher()
        pending = bytearray()
        try:
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= _WRITE_BATCH_BYTES:
                    batch, pending = bytes(pending), bytearray()
                    await asyncio.to_thread(self._write_chunk, handle, hasher, batch, path)
            if pending:
                await asyncio.to_thread(self._write_chunk, handle, hasher, bytes(pending), path)
            info = await asyncio.to_thread(self._commit, handle, temp, target, path)
        except BaseException:
            # Synchronous on purpose: this must also run when cancellation interrupted us.
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return ObjectInfo(
            path=path,
            size=hasher.size,
            checksum=hasher.checksum,
            media_type=media_type or info.media_type,
            modified=info.modified,
        )

    async def _write_bytes(self, path: str, data: bytes, media_type: str | None) -> ObjectInfo:
        # One thread hop instead of three: many small files (labels, per-image JSON) are
        # written at about twice the rate.
        return await asyncio.to_thread(self._write_bytes_blocking, path, data, media_type)

    def _write_bytes_blocking(self, path: str, data: bytes, media_type: str | None) -> ObjectInfo:
        target, temp, handle = self._create_temp(path)
        hasher = StreamHasher()
        try:
            self._write_chunk(handle, hasher, data, path)
            info = self._commit(handle, temp, target, path)
        except BaseException:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return ObjectInfo(
            path=path,
            size=hasher.size,
            checksum=hasher.checksum,
            media_type=media_type or info.media_type,
            modified=info.modified,
        )

    async def _write_many(
        self, files: Sequence[tuple[str, bytes]], concurrency: int
    ) -> builtins.list[ObjectInfo | StorageError]:
        results: builtins.list[ObjectInfo | StorageError] = []
        for start in range(0, len(files), _WRITE_MANY_BATCH):
            batch = files[start : start + _WRITE_MANY_BATCH]
            results.extend(await asyncio.to_thread(self._write_many_blocking, batch))
        return results

    def _write_many_blocking(
        self, files: Sequence[tuple[str, bytes]]
    ) -> builtins.list[ObjectInfo | StorageError]:
        """Temporary files first, one sync of them all, then the renames and one fsync per
        directory: as durable as `write_bytes` per file, without a disk flush per file."""
        results: builtins.list[ObjectInfo | StorageError] = []
        staged: builtins.list[tuple[int, str, Path, Path, StreamHasher]] = []
        for path, data in files:
            try:
                target, temp, handle = self._create_temp(path)
                hasher = StreamHasher()
                try:
                    with handle:
                        self._write_chunk(handle, hasher, data, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        temp.unlink()
                    raise
            except StorageError as exc:
                results.append(exc)
                continue
            staged.append((len(results), path, target, temp, hasher))
            results.append(StorageError(f"{self._url(path)}: not written"))  # replaced below
        try:
            _sync_files(self._root, [temp for _, _, _, temp, _ in staged])
        except OSError as exc:
            for index, path, _, temp, _ in staged:
                with contextlib.suppress(OSError):
                    temp.unlink()
                results[index] = self._error(exc, path)
            return results
        directories: set[Path] = set()
        for index, path, target, temp, hasher in staged:
            try:
                os.replace(temp, target)
                st = target.stat()
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temp.unlink()
                results[index] = self._error(exc, path)
                continue
            directories.add(target.parent)
            info = self._info(path, st)
            results[index] = ObjectInfo(
                path=path,
                size=hasher.size,
                checksum=hasher.checksum,
                media_type=info.media_type,
                modified=info.modified,
            )
        for directory in directories:
            _fsync_directory(directory)
        return results

    async def _delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete_blocking, path)

    def _url(self, path: str) -> str:
        return (self._root.joinpath(*path.split("/")) if path else self._root).as_uri()


def _fsync_directory(directory: Path) -> None:
    """Make renames in `directory` durable; a filesystem that cannot fsync one is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux (glibc or musl): fsync file by file
        return None
    return function


_SYNCFS = _load_syncfs()


def _sync_files(root: Path, paths: Sequence[Path]) -> None:
    """Flush written files to disk: one syncfs(2) of their filesystem where there is one,
    else an fsync per file."""
    if not paths:
        return
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
