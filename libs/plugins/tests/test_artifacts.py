"""Artifact serializers: the built-in ones, and how a plugin registers its own (pure logic;
saving and loading through S3 is in tests/test_pipeline_artifacts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from runmesh.plugins.artifacts import (
    ArtifactError,
    ArtifactSerializer,
    register_serializer,
    serializer_named,
)


class Upper(ArtifactSerializer):
    name = "test-upper"

    def serialize(self, value: Any) -> bytes:
        return str(value).upper().encode()

    def deserialize(self, data: bytes) -> Any:
        return data.decode().lower()


class OtherUpper(Upper):
    pass


@pytest.mark.parametrize(
    ("name", "value"),
    [("json", {"a": [1, 2.5, None, "x"]}), ("text", "héllo"), ("bytes", b"\x00\xff")],
)
def test_the_built_in_serializers_round_trip(name: str, value: Any) -> None:
    serializer = serializer_named(name)
    serializer.validate(value)
    assert serializer.deserialize(serializer.serialize(value)) == value


@pytest.mark.parametrize(("name", "value"), [("text", 3), ("bytes", "x"), ("json", {1, 2})])
def test_a_value_a_serializer_cannot_write_is_an_artifact_error(name: str, value: Any) -> None:
    serializer = serializer_named(name)
    with pytest.raises(ArtifactError):
        serializer.validate(value)
        serializer.serialize(value)


def test_a_plugin_registers_its_own_once_and_cannot_take_a_name() -> None:
    register_serializer(Upper())
    register_serializer(Upper())  # the module imported again: harmless
    assert serializer_named("test-upper").deserialize(b"ABC") == "abc"
    with pytest.raises(ArtifactError, match="already"):
        register_serializer(OtherUpper())
    with pytest.raises(ArtifactError, match="already"):
        register_serializer(type("Json", (Upper,), {"name": "json"})())
    with pytest.raises(ArtifactError, match="name"):
        register_serializer(type("Bad", (Upper,), {"name": "Has Space"})())


def test_an_unknown_serializer_says_who_must_register_it() -> None:
    with pytest.raises(ArtifactError, match="must register it when its module is imported"):
        serializer_named("nobody-registered-this")
