"""The settings the sandbox fills in for its own servers."""

from __future__ import annotations

from runmesh.core.settings import Settings
from runmesh.sandbox.stack import SANDBOX_SESSION_TIMEOUT_MS, _tansu_group_timing


def test_tansu_gets_a_shorter_session_unless_the_settings_name_one() -> None:
    assert _tansu_group_timing(Settings()) == {
        "kafka_session_timeout_ms": SANDBOX_SESSION_TIMEOUT_MS,
        "kafka_heartbeat_interval_ms": 2_000,
    }
    chosen = Settings(kafka_session_timeout_ms=20_000, kafka_heartbeat_interval_ms=5_000)
    assert _tansu_group_timing(chosen) == {}
