"""Publishing a plugin as a tenant would, for the benches: its archive stored in the platform
bucket and its manifest announced on `runmesh.plugins`, as the gateway's `POST /v1/plugins`
stores and announces them (runmesh.gateway.plugin_publishing), without a gateway."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from runmesh.core.events import PluginArchive, PluginManifest, encode
from runmesh.core.kafka import make_producer
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.plugins.archive import build_archive, sha256_hex
from runmesh.plugins.loader import load_plugin
from runmesh.storage import platform_storage

_CODE_LINE = re.compile(r"^code:.*$", re.MULTILINE)


async def publish(settings: Settings, directory: Path, tenant: str) -> str:
    """Store the plugin at `directory` as `tenant`'s and announce it; its `code@version`."""
    plugin = load_plugin(directory)
    data = build_archive(directory, {n: a.manifest() for n, a in plugin.actions.items()})
    key = f"plugins/{tenant}/{plugin.code}/{plugin.version}.zip"
    async with platform_storage(settings.s3) as storage:
        await storage.write_bytes(key, data, media_type="application/zip")
        uri = storage.url(key)
    manifest = plugin.manifest(service="gateway", worker="publish").model_copy(
        update={
            "tenant": tenant,
            "archive": PluginArchive(uri=uri, sha256=sha256_hex(data), size=len(data)),
        }
    )
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        topic = Topics(settings.topic_prefix).plugins
        await producer.send_and_wait(topic, encode(PluginManifest.model_validate(manifest)))
    finally:
        await producer.stop()
    return plugin.ref


def renamed_copy(source: Path, target: Path, code: str) -> Path:
    """A copy of the plugin at `source` in `target` under another code: a tenant publishing a
    built-in plugin's code as a plugin of its own (a published version may not take the code
    of a built-in one)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    config = target / "config.yaml"
    text, found = _CODE_LINE.subn(f"code: {code}", config.read_text(), count=1)
    if not found:
        raise RuntimeError(f"{config}: no `code:` line to rename")
    config.write_text(text)
    return target


async def publish_copy(
    settings: Settings, source: Path, work: Path, *, code: str, tenant: str
) -> str:
    """Publish the plugin at `source` as `tenant`'s plugin `code` (copied under `work`)."""
    return await publish(settings, renamed_copy(source, work / code, code), tenant)
