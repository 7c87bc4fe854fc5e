"""`$RUNMESH_HOME/dev.json`: how the other `runmesh` commands find a running `runmesh dev`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, SecretStr, ValidationError

from runmesh.core.processes import pid_alive
from runmesh.core.settings import Settings

DEV_FILE = "dev.json"

# Settings a dev.json may fill in when the environment does not set them.
_FILLED = ("gateway_url", "token", "kafka_bootstrap", "database_url", "s3_endpoint_url")


class DevInfo(BaseModel):
    """What `runmesh dev` writes once everything is up."""

    gateway_url: str
    token: str
    kafka_bootstrap: str
    database_url: str
    s3_endpoint_url: str
    s3_bucket: str
    s3_access_key_id: str | None = None  # the sandbox moto's (any key works; one is needed)
    s3_secret_access_key: str | None = None
    topic_prefix: str
    pid: int


def dev_info_path(settings: Settings) -> Path:
    """Where dev.json lives."""
    return settings.home / DEV_FILE


def write_dev_info(settings: Settings, info: DevInfo) -> Path:
    """Write dev.json readable by the owner only (it holds a token)."""
    path = dev_info_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(info.model_dump_json(indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def remove_dev_info(settings: Settings, pid: int) -> None:
    """Remove dev.json if this process wrote it."""
    info = read_dev_info(settings)
    if info is not None and info.pid == pid:
        dev_info_path(settings).unlink(missing_ok=True)


def read_dev_info(settings: Settings) -> DevInfo | None:
    """dev.json of a running `runmesh dev`, or None (missing, unreadable, or its owner died)."""
    path = dev_info_path(settings)
    try:
        info = DevInfo.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None
    if not pid_alive(info.pid):
        return None  # left by a `runmesh dev` that was killed
    return info


def cli_settings(settings: Settings) -> Settings:
    """`settings` with what the environment leaves unset taken from a running `runmesh dev`."""
    info = read_dev_info(settings)
    if info is None:
        return settings
    update: dict[str, object] = {}
    for name in _FILLED:
        if name not in settings.model_fields_set:
            value = getattr(info, name)
            update[name] = SecretStr(value) if name == "token" else value
    if "topic_prefix" not in settings.model_fields_set:
        update["topic_prefix"] = info.topic_prefix
    if "s3_bucket" not in settings.model_fields_set:
        update["s3_bucket"] = info.s3_bucket
    if info.s3_access_key_id and "s3_access_key_id" not in settings.model_fields_set:
        update["s3_access_key_id"] = info.s3_access_key_id
        update["s3_secret_access_key"] = SecretStr(info.s3_secret_access_key or "")
    return settings.model_copy(update=update)
