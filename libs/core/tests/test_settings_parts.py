"""`Settings` by concern: each field in exactly one part, each part a faithful view."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import SecretStr, ValidationError

from runmesh.core.settings import Settings
from runmesh.core.settings_parts import PARTS, SettingsPart


def _owned_fields(part: type[SettingsPart]) -> list[str]:
    fields = Settings.model_fields
    return [
        part.PREFIX + name if part.PREFIX + name in fields else name for name in part.model_fields
    ]


def test_every_setting_belongs_to_exactly_one_part() -> None:
    owners = Counter(field for part in PARTS for field in _owned_fields(part))

    assert sorted(owners) == sorted(Settings.model_fields)
    assert [field for field, count in owners.items() if count > 1] == []


def test_a_part_carries_the_values_the_environment_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMESH_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("RUNMESH_KAFKA_SASL_PASSWORD", "kafka-secret")
    monkeypatch.setenv("RUNMESH_TOPIC_PREFIX", "acme")
    monkeypatch.setenv("RUNMESH_PLUGIN_PATH", "/a:/b")
    monkeypatch.setenv("RUNMESH_S3_SECRET_ACCESS_KEY", "s3-secret")

    settings = Settings()

    assert settings.kafka.bootstrap == "broker:9092"
    assert settings.kafka.topic("runs") == "acme.runs"
    assert settings.kafka.sasl_password == SecretStr("kafka-secret")
    assert [str(path) for path in settings.plugins.path] == ["/a", "/b"]
    # A part holds its concern only: the Kafka part has no S3 key and no DSN.
    assert "s3-secret" not in repr(settings.kafka.model_dump())
    assert not hasattr(settings.kafka, "secret_access_key")
    assert not hasattr(settings.kafka, "url")


def test_a_part_follows_a_copy_with_changes() -> None:
    settings = Settings(database_url="postgresql://a/db")

    changed = settings.model_copy(update={"database_url": "postgresql://b/db"})

    assert settings.database.url == "postgresql://a/db"
    assert changed.database.url == "postgresql://b/db"


def test_a_part_is_frozen() -> None:
    part = Settings().gateway

    with pytest.raises(ValidationError):
        part.port = 1  # type: ignore[misc]
