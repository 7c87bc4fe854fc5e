"""dev.json completes the settings other commands leave unset (including the sandbox's S3 key)."""

from __future__ import annotations

import os
from pathlib import Path

from runmesh.cli.dev_info import DevInfo, cli_settings, write_dev_info
from runmesh.core.settings import Settings


def test_unset_settings_come_from_a_running_dev(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, s3_bucket="mine")
    info = DevInfo(
        gateway_url="http://127.0.0.1:8600",
        token="rmt_x",
        kafka_bootstrap="127.0.0.1:9092",
        database_url="postgresql://u:p@127.0.0.1:5432/db",
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_bucket="runmesh",
        s3_access_key_id="key",
        s3_secret_access_key="secret",
        topic_prefix="runmesh",
        pid=os.getpid(),
    )
    write_dev_info(settings, info)
    filled = cli_settings(settings)
    assert filled.gateway_url == "http://127.0.0.1:8600"
    assert filled.token is not None and filled.token.get_secret_value() == "rmt_x"
    assert filled.s3_bucket == "mine"  # set explicitly: kept
    assert filled.s3_access_key_id == "key"
    assert filled.s3_secret_access_key is not None
    assert filled.s3_secret_access_key.get_secret_value() == "secret"
    assert oct((tmp_path / "dev.json").stat().st_mode & 0o777) == "0o600"
