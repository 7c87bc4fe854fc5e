"""Published plugin versions end to end: the gateway checks, stores and announces archives;
an export worker installs each version into a virtualenv of its own (uv or pip, offline from
wheels the plugin ships) and runs it with that interpreter; pinned runs keep their version.
Real broker, PostgreSQL and moto S3."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runmesh.core.events import FailedPayload, RunEventBase, StartedPayload, SucceededPayload
from runmesh.core.settings import Settings
from runmesh.core.testing import zip_bomb
from runmesh.export import BUILTIN_PLUGIN
from runmesh.plugins.archive import build_archive, sha256_hex
from runmesh.plugins.loader import load_plugin
from runmesh.storage import platform_storage

from .conftest import GatewayHandle, RunClient, service_worker

CATEGORY = "export"

PROBE = '''\
"""A published test plugin: reports the interpreter it runs in and its requirement's value."""

import sys

from pydantic import BaseModel, Field

from runmesh.plugins import Action


class ProbeParams(BaseModel):
    """How many steps to report."""

    steps: int = Field(default=2, ge=1, le=10)


class Probe(Action):
    """Reports where it runs."""

    params_model = ProbeParams
    progress_categories = {{"probe": "Probing"}}

    def start(self) -> dict:
        {imports}  # at run time: the publisher's machine need not have the requirement
        for step in range(self.params.steps):
            self.run.set_progress(step + 1, self.params.steps, category="probe")
        self.run.log_message(f"{{self.run.context.plugin}} {{self.run.context.plugin_version}}")
        return {{"value": {value}, "python": sys.executable, "prefix": sys.prefix}}
'''


@dataclass
class Stack:
    settings: Settings
    gateway: GatewayHandle
    runs: RunClient
    api: httpx.AsyncClient
    tenant: str


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    """A gateway and an export worker whose plugin cache is the test's own."""
    settings = settings.model_copy(
        update={
            "plugin_cache_dir": tmp_path / "plugin-cache",
            "plugin_archive_max_bytes": 8 << 20,
            "plugin_archive_max_unpacked_bytes": 32 << 20,
        }
    )
    gateway = GatewayHandle(settings)
    await gateway.start()
    runs = RunClient(settings, category=CATEGORY)
    await runs.start()
    tenant = f"pp-{uuid.uuid4().hex[:8]}"
    try:
        async with service_worker(settings, CATEGORY, BUILTIN_PLUGIN, service="export"):
            token = await gateway.token(tenant)
            async with httpx.AsyncClient(
                base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as api:
                yield Stack(settings, gateway, runs, api, tenant)
    finally:
        await runs.stop()
        await gateway.stop()


def make_wheel(directory: Path, name: str, version: str, source: str) -> Path:
    """A minimal pure-Python wheel of one module (what `pip wheel` would build)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": source.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: runmesh-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(content)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


def write_probe(
    directory: Path,
    code: str,
    version: str,
    *,
    requirement: tuple[str, str] | None = None,
    requirements: str = "",
    package_manager: str = "uv",
) -> Path:
    """A probe plugin; `requirement` (name, value) ships a wheel of that name whose VALUE the
    action returns, installed offline from the plugin's `wheels/` folder."""
    (directory / "plugin").mkdir(parents=True, exist_ok=True)
    (directory / "wheels").mkdir(exist_ok=True)
    (directory / "wheels" / "README").write_text("wheels installed offline\n")
    imports, value = "pass", repr("none")
    if requirement is not None:
        name, module_value = requirement
        make_wheel(directory / "wheels", name, "1.0", f"VALUE = {module_value!r}\n")
        requirements = f"{name}==1.0\n"
        imports, value = f"import {name}", f"{name}.VALUE"
    (directory / "plugin" / "__init__.py").write_text("")
    (directory / "plugin" / "probe.py").write_text(PROBE.format(imports=imports, value=value))
    (directory / "requirements.txt").write_text(requirements)
    (directory / "config.yaml").write_text(
        f"code: {code}\nname: Probe\nversion: '{version}'\ncategory: export\n"
        "data_types: [image]\n"
        f"package_manager: {package_manager}\n"
        "package_manager_options: [--no-index, --find-links, wheels]\n"
        "actions:\n  probe:\n    entrypoint: plugin.probe.Probe\n    method: job\n"
    )
    return directory


def archive_of(directory: Path) -> bytes:
    plugin = load_plugin(directory)
    return build_archive(directory, {n: a.manifest() for n, a in plugin.actions.items()})


async def publish(
    api: httpx.AsyncClient, data: bytes, *, force: bool = False, sha256: str | None = None
) -> httpx.Response:
    return await api.post(
        "/v1/plugins",
        files={"archive": ("plugin.zip", data, "application/zip")},
        data={"force": str(force).lower(), **({"sha256": sha256} if sha256 else {})},
    )


async def run_over_rest(
    stack: Stack, plugin: str, params: dict[str, Any] | None = None
) -> tuple[RunEventBase, list[RunEventBase]]:
    response = await stack.api.post(
        "/v1/runs",
        json={"category": CATEGORY, "plugin": plugin, "action": "probe", "params": params or {}},
    )
    assert response.status_code == 202, response.text
    run_id = uuid.UUID(response.json()["id"])
    terminal = await stack.runs.wait_terminal(run_id, timeout=120)
    return terminal, stack.runs.events[run_id]


def started(events: list[RunEventBase]) -> StartedPayload:
    payload = next(e.payload for e in events if e.type == "run.started")
    assert isinstance(payload, StartedPayload)
    return payload


async def test_published_versions_run_in_their_own_virtualenvs_and_pins_hold(
    stack: Stack, tmp_path: Path
) -> None:
    code = f"probe-{uuid.uuid4().hex[:6]}"
    v1 = write_probe(tmp_path / "v1", code, "1.0.0", requirement=("tinydep", "one"))
    data = archive_of(v1)
    response = await publish(stack.api, data, sha256=sha256_hex(data))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["archive"]["sha256"] == sha256_hex(data)
    assert body["archive"]["uri"].endswith(f"/plugins/{stack.tenant}/{code}/1.0.0.zip")
    assert body["actions"] == ["probe"]

    terminal, events = await run_over_rest(stack, f"{code}@1.0.0", {"steps": 3})
    assert terminal.type == "run.succeeded", terminal.payload
    assert isinstance(terminal.payload, SucceededPayload)
    result = terminal.payload.result
    assert result["value"] == "one"  # the requirement, installed in the version's virtualenv
    cache = stack.settings.plugin_cache_dir
    assert result["prefix"].startswith(str(cache))
    assert started(events).plugin_version == "1.0.0"
    assert started(events).params == {"steps": 3}
    logs = [e.payload.message for e in events if e.type == "run.log"]  # type: ignore[union-attr]
    assert any("installing the requirements" in line for line in logs)
    assert f"{code} 1.0.0" in logs

    # A release is immutable.
    again = await publish(stack.api, data)
    assert again.status_code == 409
    assert "immutable" in again.json()["detail"]

    # Version 2 installs with pip; the pinned version keeps running version 1.
    v2 = write_probe(
        tmp_path / "v2", code, "2.0.0", requirement=("tinydep", "two"), package_manager="pip"
    )
    assert (await publish(stack.api, archive_of(v2))).status_code == 201
    for plugin, value, version in [
        (f"{code}@1.0.0", "one", "1.0.0"),
        (f"{code}@2.0.0", "two", "2.0.0"),
        (code, "two", "2.0.0"),
    ]:
        terminal, events = await run_over_rest(stack, plugin)
        assert terminal.type == "run.succeeded", (plugin, terminal.payload)
        assert isinstance(terminal.payload, SucceededPayload)
        assert terminal.payload.result["value"] == value, plugin
        assert started(events).plugin_version == version
    # Installed once per checksum, each version in its own directory.
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2

    listed = (await stack.api.get(f"/v1/plugins/{code}/versions")).json()
    assert [(v["version"], v["published"], v["package_manager"]) for v in listed] == [
        ("1.0.0", True, "uv"),
        ("2.0.0", True, "pip"),
    ]
    images = {
        p["code"] for p in (await stack.api.get("/v1/plugins?data_type=image")).json()["items"]
    }
    videos = {
        p["code"] for p in (await stack.api.get("/v1/plugins?data_type=video")).json()["items"]
    }
    assert code in images and code not in videos

    # Params the gateway refuses (422) are also refused by the job when sent straight to Kafka.
    response = await stack.api.post(
        "/v1/runs",
        json={"category": CATEGORY, "plugin": code, "action": "probe", "params": {"steps": 0}},
    )
    assert response.status_code == 422
    request = await stack.runs.submit(
        "probe", {"steps": 0}, plugin=f"{code}@1.0.0", tenant=stack.tenant
    )
    terminal = await stack.runs.wait_terminal(request.run_id, timeout=60)
    assert isinstance(terminal.payload, FailedPayload)
    assert terminal.payload.error_type == "ValidationError"
    assert "steps" in terminal.payload.message

    # Deleting a version stops new runs of it, over REST and over Kafka.
    assert (await stack.api.delete(f"/v1/plugins/{code}/versions/2.0.0")).status_code == 204
    assert (await stack.api.delete(f"/v1/plugins/{code}/versions/2.0.0")).status_code == 404
    response = await stack.api.post(
        "/v1/runs", json={"category": CATEGORY, "plugin": f"{code}@2.0.0", "action": "probe"}
    )
    assert response.status_code == 422
    request = await stack.runs.submit("probe", plugin=f"{code}@2.0.0", tenant=stack.tenant)
    terminal = await stack.runs.wait_terminal(request.run_id, timeout=60)
    assert isinstance(terminal.payload, FailedPayload)
    assert terminal.payload.error_type == "UnknownAction"
    listed = (await stack.api.get(f"/v1/plugins/{code}/versions")).json()
    assert [v["version"] for v in listed] == ["1.0.0"]
    builtin = await stack.api.delete("/v1/plugins/runmesh-export/versions/0.1.0")
    assert builtin.status_code in (404, 409)

    # Plugins are tenant-scoped.
    other = await stack.gateway.token(f"{stack.tenant}-other")
    hidden = await stack.api.get(
        f"/v1/plugins/{code}/versions", headers={"Authorization": f"Bearer {other}"}
    )
    assert hidden.status_code == 404
    request = await stack.runs.submit("probe", plugin=f"{code}@1.0.0", tenant=f"{stack.tenant}-x")
    terminal = await stack.runs.wait_terminal(request.run_id, timeout=60)
    assert isinstance(terminal.payload, FailedPayload)
    assert terminal.payload.error_type == "UnknownAction"


async def test_unsafe_or_broken_archives_are_refused_with_a_clear_error(
    stack: Stack, tmp_path: Path
) -> None:
    code = f"evil-{uuid.uuid4().hex[:6]}"
    good = archive_of(write_probe(tmp_path / "good", code, "1.0.0"))
    with zipfile.ZipFile(io.BytesIO(good)) as source:
        files = {info.filename: source.read(info) for info in source.infolist()}

    def zipped(extra: dict[str, bytes], *, link: str | None = None) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in {**files, **extra}.items():
                archive.writestr(name, content)
            if link is not None:
                info = zipfile.ZipInfo(link)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, "/etc/passwd")
        return buffer.getvalue()

    bad_config = files["config.yaml"].replace(b"method: job", b"method: later")
    cases = {
        "zip slip": (zipped({"../../outside.py": b"x"}), 422, "'..' would write outside"),
        "absolute": (zipped({"/tmp/outside.py": b"x"}), 422, "an absolute path"),
        "symlink": (zipped({}, link="plugin/passwd"), 422, "is a symbolic link"),
        "1 GB bomb": (zip_bomb("plugin/weights.bin", files=files), 422, "unpacks to more than"),
        "bad config": (
            zipped({"config.yaml": bad_config}),
            422,
            "config.yaml: actions.probe.method:",
        ),
        "not a zip": (b"this is not an archive", 422, "not a zip archive"),
        "too large": (os.urandom(9 << 20), 413, "RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES"),
    }
    for case, (data, status, message) in cases.items():
        response = await publish(stack.api, data)
        assert response.status_code == status, (case, response.text)
        assert message in response.json()["detail"], (case, response.json()["detail"])
    response = await publish(stack.api, good, sha256="0" * 64)
    assert response.status_code == 422
    assert "not the declared" in response.json()["detail"]

    # Nothing was stored or recorded.
    assert (await stack.api.get(f"/v1/plugins/{code}/versions")).status_code == 404
    async with platform_storage(stack.settings.s3) as storage:
        assert [o async for o in storage.list(f"plugins/{stack.tenant}", recursive=True)] == []

    # A pre-release may be replaced with force; a release may not.
    pre = archive_of(write_probe(tmp_path / "pre", code, "1.1.0-rc.1"))
    assert (await publish(stack.api, pre)).status_code == 201
    assert (await publish(stack.api, pre)).status_code == 409
    assert (await publish(stack.api, pre, force=True)).status_code == 201
    assert (await publish(stack.api, good)).status_code == 201
    assert (await publish(stack.api, good, force=True)).status_code == 409


async def test_requirements_that_cannot_install_fail_the_run_with_the_installers_message(
    stack: Stack, tmp_path: Path
) -> None:
    code = f"noreq-{uuid.uuid4().hex[:6]}"
    for version, manager in [("1.0.0", "uv"), ("1.0.1", "pip")]:
        plugin = write_probe(
            tmp_path / version,
            code,
            version,
            requirements="runmesh-no-such-distribution==9.9\n",
            package_manager=manager,
        )
        assert (await publish(stack.api, archive_of(plugin))).status_code == 201
        terminal, events = await run_over_rest(stack, f"{code}@{version}")
        assert isinstance(terminal.payload, FailedPayload), terminal.payload
        assert terminal.payload.error_type == "PluginInstallError"
        message = terminal.payload.message
        assert f"{code}@{version}: installing its requirements failed" in message
        assert "runmesh-no-such-distribution" in message, message
        assert not [e for e in events if e.type == "run.started"]
    # Nothing half-installed is left for a later run to trust.
    assert [p.name for p in stack.settings.plugin_cache_dir.iterdir()] == []
