"""The storage broker's wire, shared by both ends: the channel, op arguments and replies, limits,
and how storage errors travel.

A published plugin's job never holds storage credentials: it sends each storage call over a
channel to its worker (`StorageBroker`), which opens the real storage under the tenant and
policy checks and performs the call. Arguments and replies are JSON objects, file data travels
as a separate raw body. Everything here is read by the worker from hostile tenant code, so
every argument model forbids extra fields, is strict (no "1" for 1) and bounds its strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from runmesh.core.errors import RunmeshError
from runmesh.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo
from runmesh.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StoragePathError,
    StoragePolicyError,
    StorageScopeError,
    StorageTooLarge,
    StorageUnavailable,
)

#: The largest body (file data) of one call or reply; a larger write is sent in chunks.
MAX_BODY_BYTES = 8 << 20
#: Storages one job may hold open at once (each `open` until its `close`).
MAX_HANDLES = 32
#: Read and write streams one job may hold open at once, over all its storages.
MAX_STREAMS = 16
#: Listing cursors one job may hold open at once.
MAX_CURSORS = 16
#: The most objects one `list`/`list_next` reply carries.
MAX_LIST_PAGE = 1000
#: Chunks a write stream buffers between the job and the storage: the worker holds at most
#: (this + 1) * MAX_BODY_BYTES per write stream, plus what the storage itself buffers.
WRITE_QUEUE_CHUNKS = 2
#: The longest path (characters) a call may name; S3 keys end at 1,024 bytes anyway.
MAX_PATH_CHARS = 4096
#: Files one `write_many` call carries (their bytes together within MAX_BODY_BYTES).
MAX_WRITE_MANY = 2000
#: The largest storage config (`open`), as JSON.
MAX_CONFIG_BYTES = 64 * 1024
#: The longest error message a reply carries.
MAX_ERROR_CHARS = 2000
#: Ids of handles, streams and cursors stay within what JSON numbers carry exactly.
MAX_ID = (1 << 53) - 1

#: error_type of a call the broker refuses as malformed (unknown op, bad args, unknown id,
#: a limit reached); the job sees it as a plain StorageError.
REQUEST_ERROR = "BrokerRequestError"
#: error_type of a failure the worker logged; the reply says nothing more.
INTERNAL_ERROR = "BrokerInternalError"


class BrokerCallError(RunmeshError):
    """A storage call the worker answered with an error.

    `error_type` is a StorageError class name (see `STORAGE_ERRORS`), `REQUEST_ERROR` or
    `INTERNAL_ERROR`; `message` is meant for people and holds no platform secret; `details`
    carries extra fields of some errors (a StoragePolicyError's `field` and `setting`): a
    channel should carry it when it can, an error is rebuilt without it too.
    """

    def __init__(
        self, error_type: str, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.details: dict[str, str] = dict(details or {})


class BrokerChannel(Protocol):
    """How a job reaches its worker's `StorageBroker` (the job's pipe implements it)."""

    # Any: args and result are JSON objects, each op's shape is one of the models below.
    async def call(
        self, op: str, args: dict[str, Any], body: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        """Send one call to the worker and await its reply (result JSON object, reply body).
        A failed call raises BrokerCallError(error_type, message)."""
        ...


# -- errors ------------------------------------------------------------------------------------

#: The StorageError classes that travel by name; any other arrives as the nearest one of these
#: it derives from (a plain StorageError at worst).
STORAGE_ERRORS: dict[str, type[StorageError]] = {
    cls.__name__: cls
    for cls in (
        StorageError,
        StorageNotFound,
        StoragePathError,
        StorageAccessDenied,
        StorageUnavailable,
        StorageTooLarge,
        StoragePolicyError,
        StorageScopeError,
    )
}


def error_type_of(error: StorageError) -> str:
    """The allow-listed class name `error` travels as."""
    for cls in type(error).__mro__:
        if STORAGE_ERRORS.get(cls.__name__) is cls:
            return cls.__name__
    return StorageError.__name__


def storage_error_from(error: BrokerCallError) -> StorageError:
    """The StorageError a job raises for `error`; an unknown error_type is a plain StorageError."""
    cls = STORAGE_ERRORS.get(error.error_type, StorageError)
    known = error.error_type in STORAGE_ERRORS
    message = error.message if known else f"{error.error_type}: {error.message}"
    if cls is StoragePolicyError:
        return StoragePolicyError(
            message,
            field=error.details.get("field", "unknown"),
            setting=error.details.get("setting", "unknown"),
        )
    return cls(message)


# -- arguments ---------------------------------------------------------------------------------


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates; no storage can name them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    return value


PathArg = Annotated[str, Field(max_length=MAX_PATH_CHARS), AfterValidator(_utf8)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
PageLimit = Annotated[int, Field(ge=1, le=MAX_LIST_PAGE)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OpenArgs(_Args):
    """`open`: a tenant storage `{provider, config}`, or the platform bucket `{platform: true}`."""

    provider: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    # Any: a provider's JSON config; open_storage validates it per provider.
    config: dict[str, Any] | None = None
    platform: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> OpenArgs:
        if self.platform == (self.provider is not None or self.config is not None):
            raise ValueError("give either {provider, config} or {platform: true}")
        if not self.platform and (self.provider is None or self.config is None):
            raise ValueError("a tenant storage needs both provider and config")
        if self.config is not None:
            try:
                size = len(orjson.dumps(self.config))
            except (TypeError, orjson.JSONEncodeError):
                raise ValueError("config must be JSON with valid UTF-8 strings") from None
            if size > MAX_CONFIG_BYTES:
                raise ValueError(f"config is larger than {MAX_CONFIG_BYTES} bytes as JSON")
        return self


class HandleArgs(_Args):
    """`close`: `{handle}`."""

    handle: Id


class PathArgs(HandleArgs):
    """`stat`, `delete`: `{handle, path}`."""

    path: PathArg


class DirArgs(HandleArgs):
    """`list_dirs`: `{handle, path=""}` (a directory; "" is the storage's root)."""

    path: PathArg = ""


class ListArgs(DirArgs):
    """`list`: `{handle, path="", recursive=false, limit}`."""

    recursive: bool = False
    limit: PageLimit = MAX_LIST_PAGE


class CursorArgs(_Args):
    """`list_next`: `{cursor, limit}`."""

    cursor: Id
    limit: PageLimit = MAX_LIST_PAGE


class CursorCloseArgs(_Args):
    """`list_close`: `{cursor}`."""

    cursor: Id


class ReadOpenArgs(PathArgs):
    """`read_open`: `{handle, path, chunk_size}`."""

    chunk_size: Annotated[int, Field(ge=1, le=MAX_BODY_BYTES)] = DEFAULT_CHUNK_SIZE


class ReadBytesArgs(PathArgs):
    """`read_bytes`: `{handle, path, max_bytes}`."""

    max_bytes: Annotated[int, Field(ge=0, le=MAX_BODY_BYTES)]


class StreamArgs(_Args):
    """`read_next`, `read_close`, `write_chunk`, `write_close`, `write_abort`: `{stream}`."""

    stream: Id


class WriteArgs(PathArgs):
    """`write_open`, `write_bytes`: `{handle, path, media_type=null}`."""

    media_type: Annotated[str, Field(max_length=255), AfterValidator(_utf8)] | None = None


class WriteManyArgs(HandleArgs):
    """`write_many`: `{handle, paths, sizes}`; the body is the files' bytes end to end."""

    paths: Annotated[list[PathArg], Field(min_length=1, max_length=MAX_WRITE_MANY)]
    sizes: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=MAX_WRITE_MANY)]

    @model_validator(mode="after")
    def _one_size_per_path(self) -> WriteManyArgs:
        if len(self.sizes) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.sizes)} sizes")
        return self


class CopyArgs(HandleArgs):
    """`copy`: `{handle, src, dst}`."""

    src: PathArg
    dst: PathArg


# -- replies -----------------------------------------------------------------------------------


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireObjectInfo(_Reply):
    """An ObjectInfo as it travels (`modified` as ISO 8601); `model_validate(info)` builds one."""

    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    path: str
    size: int
    checksum: str | None
    media_type: str | None
    modified: datetime | None

    def info(self) -> ObjectInfo:
        """The ObjectInfo this is."""
        return ObjectInfo(
            path=self.path,
            size=self.size,
            checksum=self.checksum,
            media_type=self.media_type,
            modified=self.modified,
        )


class Opened(_Reply):
    """`open` → `{handle, url, scheme}`: `url` is the storage's `url("")`."""

    handle: int
    url: str
    scheme: str


class Page(_Reply):
    """`list`, `list_next` → `{items, cursor}`; `cursor` is null once the listing is done."""

    items: list[WireObjectInfo]
    cursor: int | None


class Names(_Reply):
    """`list_dirs` → `{names}`."""

    names: list[str]


class Info(_Reply):
    """`stat`, `write_close`, `write_bytes`, `copy` → `{info}`."""

    info: WireObjectInfo


class Written(_Reply):
    """One file of `write_many`: its info, or the error it met (as a failed call's)."""

    info: WireObjectInfo | None = None
    error_type: str | None = None
    message: str = ""
    details: dict[str, str] | None = None


class ManyWritten(_Reply):
    """`write_many` → `{items}`, one per path, in order."""

    items: list[Written]


class StreamOpened(_Reply):
    """`read_open`, `write_open` → `{stream}`."""

    stream: int


class Chunk(_Reply):
    """`read_next` → `{eof}` and the next chunk as the body (empty once `eof`)."""

    eof: bool


def reply(model: _Reply) -> dict[str, Any]:
    """`model` as a JSON-compatible result object."""
    return model.model_dump(mode="json")
