"""A CLI-only install stays small (issue 22 item 6): `pip install runmesh-cli` pulls none of
what only the platform's processes need (Kafka, PostgreSQL, S3 clients, trace export, image
libraries, uv). Read from uv.lock, the resolution every install uses."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parents[3] / "uv.lock"

SERVICE_ONLY = {
    "aiobotocore",
    "botocore",
    "aiohttp",
    "asyncpg",
    "aiokafka",
    "pillow",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "protobuf",
    "uv",
}


def closure(root: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every package `root` (with `extras`) installs, whatever the platform markers say."""
    packages: dict[str, Any] = {
        package["name"]: package for package in tomllib.loads(LOCK.read_text())["package"]
    }
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        package = packages[name]
        dependencies = list(package.get("dependencies", []))
        for extra in wanted:
            dependencies += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(dep["name"], tuple(dep.get("extra", ()))) for dep in dependencies]
    return {name for name, _ in seen}


def test_the_cli_alone_installs_no_service_dependency() -> None:
    installed = closure("runmesh-cli")
    assert installed & SERVICE_ONLY == set()
    assert {"runmesh-core", "runmesh-plugins", "typer", "httpx", "copier"} <= installed


def test_the_platform_installs_them() -> None:
    # The same reading finds them where they belong: the check above can fail.
    assert SERVICE_ONLY - {"uv"} <= closure("runmesh-gateway")
    assert closure("runmesh-cli", ("dev",)) >= SERVICE_ONLY
