"""The storage interface every provider implements, its object record and path validation."""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
import hashlib
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import ClassVar

from runmesh.storage.errors import (
    StorageError,
    StorageNotFound,
    StoragePathError,
    StorageTooLarge,
)

#: Default size of the chunks `read` yields.
DEFAULT_CHUNK_SIZE = 1 << 20

# Hashing a chunk this large on the event loop would block it for a noticeable time.
_HASH_IN_THREAD_BYTES = 256 * 1024


@dataclass(slots=True, frozen=True)
class ObjectInfo:
    """One stored object (a file; directories are not objects).

    `path` is relative to the storage's root, POSIX-style. `checksum` is "sha256:<hex>" where
    the provider knows it (writes always return it; `FileStorage.stat` and listings do not
    compute it). `modified` is timezone-aware (UTC) where known.
    """

    path: str
    size: int
    checksum: str | None
    media_type: str | None
    modified: datetime | None


def validate_path(path: str, *, directory: bool = False) -> str:
    """Return `path` if it is a valid relative object path, else raise StoragePathError.

    Refused: absolute paths, empty, `.` or `..` segments, backslashes, NUL and other control
    characters. With `directory=True` the root ("") is allowed and one trailing "/" is dropped.
    """
    if not isinstance(path, str):
        raise StoragePathError(f"invalid storage path {path!r}: not a string")
    if directory:
        if path == "":
            return ""
        if path.endswith("/") and path != "/":
            path = path[:-1]
    problem: str | None = None
    if path == "":
        problem = "the path is empty"
    elif path.startswith("/"):
        problem = "absolute paths are not allowed"
    elif "\\" in path:
        problem = "backslashes are not allowed"
    elif any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        problem = "control characters (NUL, newline, ...) are not allowed"
    else:
        for segment in path.split("/"):
            if segment == "":
                problem = "empty path segments ('//' or a trailing '/') are not allowed"
            elif segment in (".", ".."):
                problem = f"'{segment}' segments are not allowed"
            if problem:
                break
    if problem:
        raise StoragePathError(f"invalid storage path {path!r}: {problem}")
    return path


def join_path(directory: str, name: str) -> str:
    """`directory/name`, or `name` at the root."""
    return f"{directory}/{name}" if directory else name


def guess_media_type(path: str) -> str | None:
    """The media type the file name suggests (`mimetypes`), or None."""
    return mimetypes.guess_type(path, strict=False)[0]


def format_checksum(hexdigest: str) -> str:
    """`ObjectInfo.checksum` for a SHA-256 hex digest."""
    return f"sha256:{hexdigest}"


class StreamHasher:
    """SHA-256 and size of a stream fed chunk by chunk; large chunks are hashed off the loop."""

    __slots__ = ("_hash", "size")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    async def update(self, chunk: bytes) -> None:
        """Add `chunk` (hashlib releases the GIL, so a worker thread really runs in parallel)."""
        if len(chunk) >= _HASH_IN_THREAD_BYTES:
            await asyncio.to_thread(self._hash.update, chunk)
        else:
            self._hash.update(chunk)
        self.size += len(chunk)

    def update_blocking(self, chunk: bytes) -> None:
        """Add `chunk` from a worker thread."""
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        """The SHA-256 hex digest of everything added so far."""
        return self._hash.hexdigest()

    @property
    def checksum(self) -> str:
        """`ObjectInfo.checksum` of everything added so far."""
        return format_checksum(self._hash.hexdigest())


class Storage(abc.ABC):
    """One async interface over files, S3 and HTTP (DESIGN §8); use it as `async with`.

    Paths are relative to the storage's root and POSIX-style ("a/b.txt"); every public method
    validates them (`validate_path`) before the provider sees them. `list` and `read` return
    async generators: close them (`contextlib.aclosing`) when stopping early.
    """

    #: The URL scheme of `url()`: "file", "s3" or "http(s)".
    scheme: ClassVar[str]

    # -- public API: validates paths, then calls the provider's hooks --------------------

    def list(self, path: str = "", *, recursive: bool = False) -> AsyncGenerator[ObjectInfo, None]:
        """The files under directory `path`, sorted by path.

        Flat (default): the files directly in `path`; recursive: every file below it. A missing
        directory lists nothing. Checksums and media types may be None here; `stat` has them.
        """
        return self._list(validate_path(path, directory=True), recursive)

    async def list_dirs(self, path: str = "") -> builtins.list[str]:
        """Names (not paths) of the immediate subdirectories of `path`, sorted."""
        return await self._list_dirs(validate_path(path, directory=True))

    async def stat(self, path: str) -> ObjectInfo:
        """The object at `path`; StorageNotFound when there is none."""
        return await self._stat(validate_path(path))

    async def exists(self, path: str) -> bool:
        """Whether an object exists at `path`."""
        try:
            await self._stat(validate_path(path))
        except StorageNotFound:
            return False
        return True

    def read(
        self, path: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        """Stream the object at `path` in chunks of at most `chunk_size` bytes.

        StorageNotFound (raised on the first iteration) when it does not exist.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        return self._read(validate_path(path), chunk_size)

    async def read_bytes(self, path: str, *, max_bytes: int) -> bytes:
        """The whole object at `path`; StorageTooLarge when it exceeds `max_bytes`.

        Stops reading as soon as the limit is passed, so a huge object costs little.
        """
        path = validate_path(path)
        buffer = bytearray()
        chunk_size = max(1, min(max_bytes + 1, DEFAULT_CHUNK_SIZE))
        async with contextlib.aclosing(self._read(path, chunk_size)) as chunks:
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) > max_bytes:
                    raise StorageTooLarge(f"{self.url(path)} is larger than {max_bytes} bytes")
        return bytes(buffer)

    async def write(
        self, path: str, chunks: AsyncIterable[bytes], *, media_type: str | None = None
    ) -> ObjectInfo:
        """Store the stream `chunks` at `path` (replacing any object there).

        The SHA-256 is computed while streaming; the returned ObjectInfo has the size and
        checksum. `media_type` defaults to the one the file name suggests.
        """
        return await self._write(validate_path(path), chunks, media_type)

    async def write_bytes(
        self, path: str, data: bytes, *, media_type: str | None = None
    ) -> ObjectInfo:
        """`write` for data already in memory."""
        return await self._write_bytes(validate_path(path), data, media_type)

    async def write_many(
        self, files: Sequence[tuple[str, bytes]], *, concurrency: int = 16
    ) -> builtins.list[ObjectInfo | StorageError]:
        """Store many small in-memory files; per file its ObjectInfo or the error it met.

        For outputs of thousands of small files (label files, per-image JSON): providers
        may do it cheaper than one `write_bytes` each (the file provider makes them durable
        with one filesystem sync instead of one per file).
        """
        checked = [(validate_path(path), data) for path, data in files]
        return await self._write_many(checked, concurrency)

    async def _write_many(
        self, files: Sequence[tuple[str, bytes]], concurrency: int
    ) -> builtins.list[ObjectInfo | StorageError]:
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(path: str, data: bytes) -> ObjectInfo | StorageError:
            async with limit:
                try:
                    return await self._write_bytes(path, data, None)
                except StorageError as exc:
                    return exc

        return list(await asyncio.gather(*(one(path, data) for path, data in files)))

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy the object at `src` to `dst` (same storage) and return `dst`'s ObjectInfo."""
        return await self._copy(validate_path(src), validate_path(dst))

    async def delete(self, path: str) -> None:
        """Delete the object at `path`; nothing happens when it does not exist."""
        await self._delete(validate_path(path))

    def url(self, path: str = "") -> str:
        """The object's URL: `file:///abs/path`, `s3://bucket/key`, `https://host/path`."""
        return self._url(validate_path(path, directory=True))

    async def close(self) -> None:  # noqa: B027 - a no-op for providers without clients
        """Release clients and connections. Safe to call twice."""

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- provider hooks: paths are already validated ------------------------------------

    @abc.abstractmethod
    def _list(self, path: str, recursive: bool) -> AsyncGenerator[ObjectInfo, None]:
        """Provider part of `list`."""

    @abc.abstractmethod
    async def _list_dirs(self, path: str) -> builtins.list[str]:
        """Provider part of `list_dirs`."""

    @abc.abstractmethod
    async def _stat(self, path: str) -> ObjectInfo:
        """Provider part of `stat`."""

    @abc.abstractmethod
    def _read(self, path: str, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Provider part of `read`."""

    @abc.abstractmethod
    async def _write(
        self, path: str, chunks: AsyncIterable[bytes], media_type: str | None
    ) -> ObjectInfo:
        """Provider part of `write`."""

    async def _write_bytes(self, path: str, data: bytes, media_type: str | None) -> ObjectInfo:
        """`_write` of one chunk; providers override it where one call can do it cheaper."""

        async def one_chunk() -> AsyncGenerator[bytes, None]:
            yield data

        return await self._write(path, one_chunk(), media_type)

    async def _copy(self, src: str, dst: str) -> ObjectInfo:
        """Provider part of `copy`; by default streams `src` through this process."""
        info = await self._stat(src)
        async with contextlib.aclosing(self._read(src, DEFAULT_CHUNK_SIZE)) as chunks:
            return await self._write(dst, chunks, info.media_type)

    @abc.abstractmethod
    async def _delete(self, path: str) -> None:
        """Provider part of `delete`."""

    @abc.abstractmethod
    def _url(self, path: str) -> str:
        """Provider part of `url`."""
