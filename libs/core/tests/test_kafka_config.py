"""Kafka clients get TLS and SASL from the settings: producers, consumers and the admin client."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from runmesh.core.kafka import admin as admin_module
from runmesh.core.kafka import consumer_config, ensure_topics, make_consumer, make_producer
from runmesh.core.kafka.clients import connection_config
from runmesh.core.settings import Settings
from runmesh.core.settings_parts import KafkaSettings


def kafka_settings(protocol: str, *, sasl: bool = False) -> KafkaSettings:
    extra: dict[str, Any] = {}
    if sasl:
        extra = {
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "svc",
            "kafka_sasl_password": SecretStr("s3cret"),
        }
    return Settings(kafka_bootstrap="broker:9093", kafka_security_protocol=protocol, **extra).kafka


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_plaintext_protocols_get_no_ssl_context(protocol: str) -> None:
    config = connection_config(kafka_settings(protocol, sasl=protocol.startswith("SASL")))
    assert config["security_protocol"] == protocol
    assert "ssl_context" not in config


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL", "sasl_ssl"])
def test_ssl_protocols_get_a_verifying_ssl_context(protocol: str) -> None:
    config = connection_config(kafka_settings(protocol, sasl=protocol.upper() == "SASL_SSL"))
    assert config["security_protocol"] == protocol.upper()
    context = config["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    # The default context: the broker's certificate and name are checked, not just encrypted.
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_sasl_credentials_are_passed_with_the_password_unwrapped() -> None:
    config = connection_config(kafka_settings("SASL_SSL", sasl=True))
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "svc"
    assert config["sasl_plain_password"] == "s3cret"


def test_consumer_config_carries_the_connection_config() -> None:
    config = consumer_config(kafka_settings("SASL_SSL", sasl=True), group_id="g")
    assert isinstance(config["ssl_context"], ssl.SSLContext)
    assert config["sasl_plain_username"] == "svc"


async def test_aiokafka_accepts_the_clients_built_for_sasl_ssl() -> None:
    # aiokafka raises ValueError at construction for SSL without a context; nothing connects
    # before start(), so no broker is needed.
    kafka = kafka_settings("SASL_SSL", sasl=True)
    producer = make_producer(kafka)
    consumer = make_consumer(kafka, "topic", group_id="g")
    admin = AIOKafkaAdminClient(**connection_config(kafka))
    await producer.stop()
    await consumer.stop()
    await admin.close()


class _AdminStartedError(Exception):
    """Raised by the stand-in admin client instead of reaching a broker."""


async def test_ensure_topics_builds_its_admin_client_with_security_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[dict[str, Any]] = []

    class RecordingAdmin:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

        async def start(self) -> None:
            raise _AdminStartedError

    monkeypatch.setattr(admin_module, "AIOKafkaAdminClient", RecordingAdmin)
    kafka = kafka_settings("SASL_SSL", sasl=True)
    with pytest.raises(_AdminStartedError):
        await ensure_topics(kafka, ["runmesh.events"])
    [kwargs] = built
    assert kwargs["bootstrap_servers"] == "broker:9093"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "svc"
    assert kwargs["sasl_plain_password"] == "s3cret"
