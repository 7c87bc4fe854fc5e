"""Typed artifacts: a value an action saves for a later step, and reads back as a value.

`save_artifact(run, name, value, type=..., serializer=...)` turns the value into bytes with a
named serializer, writes them to the run's folder of the platform bucket
(`runs/<tenant>/<run>/artifacts/<name>`), announces a `run.artifact` event carrying the type
and the serializer, and returns an `Artifact`: the reference to put in the action's result.
A later step declares a param of type `Artifact` (fed by `${{ steps.S.result.KEY }}`) and
`load_artifact(run, artifact)` gives it the value back, deserialized by the same serializer
and checked against the stored checksum.

Serializers are looked up by name: `json`, `text` and `bytes` are built in; a plugin adds its
own with `register_serializer(...)` at import (Dioptra's artifact tasks, Synapse's typed
outputs), and the consuming plugin must know the serializer the producer used. The storage is
imported only when an artifact is saved or loaded: writing and validating a plugin needs no
S3 client.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Final

import orjson
from pydantic import Field

from runmesh.core.events import ArtifactPayload

if TYPE_CHECKING:
    from runmesh.plugins.run import Run

__all__ = [
    "Artifact",
    "ArtifactError",
    "ArtifactSerializer",
    "load_artifact",
    "register_serializer",
    "save_artifact",
    "serializer_named",
]

MAX_ARTIFACT_BYTES: Final = 256 * 1024 * 1024
"""The largest artifact `load_artifact` reads into memory."""
_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ARTIFACT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ArtifactError(Exception):
    """An artifact that cannot be saved or loaded: an unknown serializer, a value the
    serializer refuses, bytes that do not match their checksum, a URI outside the tenant's."""


class Artifact(ArtifactPayload):
    """A saved artifact: the `run.artifact` payload of a typed one, which says where its bytes
    are, what they are, and how to read them back."""

    type: str = Field(description="What it holds, e.g. `report:json`, `dataset:coco`")
    serializer: str = Field(description="The serializer that wrote the bytes, e.g. `json`")


class ArtifactSerializer(ABC):
    """Turns a value into bytes and back; `validate` refuses a value before it is written."""

    name: ClassVar[str]
    media_type: ClassVar[str] = "application/octet-stream"

    @abstractmethod
    def serialize(self, value: Any) -> bytes:
        """The bytes to store for `value`."""

    @abstractmethod
    def deserialize(self, data: bytes) -> Any:
        """The value `data` holds."""

    def validate(self, value: Any) -> None:  # noqa: B027 - optional, like Dioptra's
        """Raise `ArtifactError` for a value this serializer must not write."""


class JsonSerializer(ArtifactSerializer):
    """Any JSON value (objects, lists, numbers, strings, booleans, null)."""

    name = "json"
    media_type = "application/json"

    def serialize(self, value: Any) -> bytes:
        """Compact JSON."""
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise ArtifactError(f"the json serializer cannot write it: {exc}") from None

    def deserialize(self, data: bytes) -> Any:
        """The JSON value."""
        return orjson.loads(data)


class TextSerializer(ArtifactSerializer):
    """A string, as UTF-8."""

    name = "text"
    media_type = "text/plain; charset=utf-8"

    def validate(self, value: Any) -> None:
        """Only strings."""
        if not isinstance(value, str):
            raise ArtifactError(f"the text serializer writes strings, not {type(value).__name__}")

    def serialize(self, value: Any) -> bytes:
        """UTF-8."""
        return str(value).encode()

    def deserialize(self, data: bytes) -> Any:
        """The string."""
        return data.decode()


class BytesSerializer(ArtifactSerializer):
    """Bytes as they are."""

    name = "bytes"

    def validate(self, value: Any) -> None:
        """Only bytes."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ArtifactError(f"the bytes serializer writes bytes, not {type(value).__name__}")

    def serialize(self, value: Any) -> bytes:
        """The bytes."""
        return bytes(value)

    def deserialize(self, data: bytes) -> Any:
        """The bytes."""
        return data


_serializers: dict[str, ArtifactSerializer] = {
    s.name: s for s in (JsonSerializer(), TextSerializer(), BytesSerializer())
}
_lock = threading.Lock()


def register_serializer(serializer: ArtifactSerializer) -> ArtifactSerializer:
    """Make `serializer` known by its name in this process (call it when the plugin's module
    is imported). Registering the same class again is harmless; another class under a name
    already taken is an `ArtifactError`."""
    name = getattr(serializer, "name", "")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ArtifactError(f"a serializer's name is lower case letters, digits, _ . -: {name!r}")
    with _lock:
        known = _serializers.get(name)
        if known is not None and type(known) is not type(serializer):
            raise ArtifactError(f"serializer {name!r} is already {type(known).__qualname__}")
        _serializers[name] = serializer
    return serializer


def serializer_named(name: str) -> ArtifactSerializer:
    """The serializer registered as `name`."""
    with _lock:
        found = _serializers.get(name)
        known = ", ".join(sorted(_serializers))
    if found is None:
        raise ArtifactError(
            f"no serializer {name!r} in this process (known: {known}); the plugin that "
            "defines it must register it when its module is imported"
        )
    return found


async def save_artifact(
    run: Run, name: str, value: Any, *, type: str, serializer: str = "json"
) -> Artifact:
    """Write `value` for later steps and announce it; return the reference to pass on."""
    from runmesh.storage import platform_storage

    if not _ARTIFACT_NAME.fullmatch(name):
        raise ArtifactError(f"an artifact's name is letters, digits, _ . - (at most 128): {name!r}")
    chosen = serializer_named(serializer)
    chosen.validate(value)
    data = chosen.serialize(value)
    settings = _settings(run)
    key = f"runs/{run.context.tenant}/{run.run_id}/artifacts/{name}"
    async with platform_storage(settings.s3) as bucket:
        info = await bucket.write_bytes(key, data, media_type=chosen.media_type)
    artifact = Artifact(
        name=name,
        uri=f"s3://{settings.s3_bucket}/{key}",
        size=info.size,
        checksum=info.checksum,
        media_type=chosen.media_type,
        type=type,
        serializer=chosen.name,
    )
    run.log_artifact(**artifact.model_dump())
    return artifact


async def load_artifact(run: Run, artifact: Artifact) -> Any:
    """The value `artifact` holds, read from the platform bucket and deserialized.

    Only the tenant's own runs' artifacts are read: a reference is a param, and params are
    the tenant's to write."""
    from runmesh.storage import own_key, platform_storage
    from runmesh.storage.base import StreamHasher

    settings = _settings(run)
    own = f"runs/{run.context.tenant}/"
    key = own_key(artifact.uri, settings.s3_bucket, (own,))
    if key is None:
        raise ArtifactError(
            f"artifact {artifact.name!r} is at {artifact.uri}, not under "
            f"s3://{settings.s3_bucket}/{own}: only the tenant's own runs' artifacts are read"
        )
    chosen = serializer_named(artifact.serializer)
    async with platform_storage(settings.s3) as bucket:
        data = await bucket.read_bytes(key, max_bytes=MAX_ARTIFACT_BYTES)
    if artifact.checksum is not None:
        hasher = StreamHasher()
        await hasher.update(data)
        if hasher.checksum != artifact.checksum:
            raise ArtifactError(
                f"artifact {artifact.name!r} at {artifact.uri} changed since it was saved "
                f"({hasher.checksum} is not {artifact.checksum})"
            )
    return chosen.deserialize(data)


def _settings(run: Run) -> Any:  # Any: runmesh.core.settings.Settings, with its S3 parts
    settings = run.context.settings
    if settings is None:
        raise ArtifactError("artifacts need the platform's settings: run the action on a worker")
    return settings
