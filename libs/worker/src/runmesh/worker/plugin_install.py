"""Install a published plugin version on a worker: download its archive once, verify the
checksum, unpack it and build a virtualenv with its requirements, cached by checksum.

The virtualenv sees the worker's own packages too (a `.pth` file adds the worker's
site-packages after its own): the plugin's action classes subclass runmesh's bases, so
`runmesh` and its dependencies must import there. The worker's installed versions are passed
to the installer as constraints, so a plugin cannot replace, say, pydantic under runmesh: such
a requirement fails to install, with the installer's message.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import shutil
import site
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from runmesh.core.errors import PluginArchiveError, PluginInstallError
from runmesh.core.events import PluginArchive, PluginManifest
from runmesh.core.settings_parts import PluginSettings, S3Settings
from runmesh.plugins.archive import REQUIREMENTS_FILE, ArchiveLimits, extract_archive
from runmesh.plugins.archive import sha256_hex as archive_sha256
from runmesh.plugins.config import PluginConfig
from runmesh.storage import StorageError, storage_from_url

log = logging.getLogger(__name__)

_READY_FILE = ".runmesh-ready"
_INSTALLER_OUTPUT_CHARS = 3000  # of the installer's output quoted in a failed run's message
_WORKER_PTH = "_runmesh_worker.pth"

LogFn = Callable[[str], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class InstalledPlugin:
    """A published version ready to run: its unpacked directory and its interpreter."""

    directory: Path
    python: Path


class PluginInstaller:
    """Installs published plugin versions under `RUNMESH_PLUGIN_CACHE_DIR/<sha256>/`.

    A version is built in a temporary directory and renamed into place when complete, so a
    crash mid-install leaves nothing a later run would trust, and two workers sharing the
    cache both finish (the second rename loses and cleans up after itself).
    """

    def __init__(self, plugins: PluginSettings, s3: S3Settings) -> None:
        self._plugins = plugins
        self._s3 = s3
        self._root = plugins.cache_dir.expanduser()
        self._locks: dict[str, asyncio.Lock] = {}

    async def install(self, manifest: PluginManifest, log_fn: LogFn) -> InstalledPlugin:
        """The installed version (built now unless cached); `PluginInstallError` says why not.

        `log_fn` receives one line per installation stage, for the run's log.
        """
        archive = manifest.archive
        if archive is None:
            raise PluginInstallError(f"{manifest.code}@{manifest.version} has no archive")
        home = self._root / archive.sha256
        if (home / _READY_FILE).is_file():
            return _installed(home)
        lock = self._locks.setdefault(archive.sha256, asyncio.Lock())
        async with lock:
            if not (home / _READY_FILE).is_file():
                await self._build(manifest, archive, home, log_fn)
        return _installed(home)

    async def _build(
        self, manifest: PluginManifest, archive: PluginArchive, home: Path, log_fn: LogFn
    ) -> None:
        ref = f"{manifest.code}@{manifest.version}"
        await log_fn(f"installing {ref} (archive {archive.sha256[:12]}, {archive.size:,} bytes)")
        data = await self._download(ref, archive)
        self._root.mkdir(parents=True, exist_ok=True)
        staging = self._root / f".{archive.sha256}.{uuid.uuid4().hex[:8]}"
        try:
            limits = ArchiveLimits.from_settings(self._plugins)
            try:
                config = await asyncio.to_thread(extract_archive, data, staging / "plugin", limits)
            except PluginArchiveError as exc:
                raise PluginInstallError(f"{ref}: its archive is unusable: {exc}") from exc
            python = await self._create_venv(ref, staging / "venv", config)
            requirements = staging / "plugin" / REQUIREMENTS_FILE
            if _has_requirements(requirements):
                await log_fn(f"installing the requirements of {ref} with {config.package_manager}")
                await self._install_requirements(ref, staging, python, config)
            (staging / _READY_FILE).write_text(f"{ref}\n", encoding="utf-8")
            try:
                staging.rename(home)
            except OSError:
                if not (home / _READY_FILE).is_file():
                    raise
                # Another worker sharing the cache finished first: use its copy.
                await asyncio.to_thread(shutil.rmtree, staging, True)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise
        await log_fn(f"installed {ref}")

    async def _download(self, ref: str, archive: PluginArchive) -> bytes:
        directory, _, name = archive.uri.rpartition("/")
        try:
            async with storage_from_url(directory, self._s3) as storage:
                data = await storage.read_bytes(name, max_bytes=self._plugins.archive_max_bytes)
        except StorageError as exc:
            raise PluginInstallError(f"{ref}: cannot download {archive.uri}: {exc}") from exc
        digest = await asyncio.to_thread(archive_sha256, data)
        if digest != archive.sha256:
            raise PluginInstallError(
                f"{ref}: the archive at {archive.uri} has checksum {digest}, not the published "
                f"{archive.sha256}; refusing to run it"
            )
        return data

    async def _create_venv(self, ref: str, venv: Path, config: PluginConfig) -> Path:
        if config.package_manager == "uv":
            # The worker's own interpreter (by path): no download, the same Python version.
            command = [_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)]
        else:
            command = [sys.executable, "-m", "venv", str(venv)]
        await self._run_installer(ref, "creating its virtualenv", command, cwd=venv.parent)
        python = venv / "bin" / "python"
        purelib = _venv_site_packages(venv)
        worker_sites = await asyncio.to_thread(_worker_site_packages)
        # An `import` line in a .pth runs at start-up; addsitedir also reads the worker's own
        # .pth files (editable installs), which a plain path line would not.
        lines = [f"import site; site.addsitedir({path!r})" for path in worker_sites]
        (purelib / _WORKER_PTH).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return python

    async def _install_requirements(
        self, ref: str, staging: Path, python: Path, config: PluginConfig
    ) -> None:
        constraints = staging / "worker-constraints.txt"
        constraints.write_text(_worker_constraints(), encoding="utf-8")
        arguments = [
            "install",
            "-r",
            REQUIREMENTS_FILE,
            "--constraint",
            str(constraints),
            *config.package_manager_options,
        ]
        if config.package_manager == "uv":
            command = [_uv(), "pip", *arguments[:1], "--python", str(python), *arguments[1:]]
        else:
            command = [str(python), "-m", "pip", "--disable-pip-version-check", *arguments]
        # In the plugin directory: options such as `--find-links wheels` are relative to it.
        await self._run_installer(
            ref, "installing its requirements", command, cwd=staging / "plugin"
        )

    async def _run_installer(self, ref: str, what: str, command: list[str], *, cwd: Path) -> None:
        timeout_s = self._plugins.install_timeout_s
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise PluginInstallError(
                f"{ref}: {what} took longer than {timeout_s:g}s (RUNMESH_PLUGIN_INSTALL_TIMEOUT_S)"
            ) from None
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode != 0:
            text = output.decode("utf-8", "replace").strip()
            if len(text) > _INSTALLER_OUTPUT_CHARS:
                text = "…" + text[-_INSTALLER_OUTPUT_CHARS:]
            raise PluginInstallError(
                f"{ref}: {what} failed (exit {process.returncode}): {text or '(no output)'}"
            )


def _installed(home: Path) -> InstalledPlugin:
    return InstalledPlugin(directory=home / "plugin", python=home / "venv" / "bin" / "python")


def _worker_site_packages() -> list[str]:
    return [path for path in site.getsitepackages() if Path(path).is_dir()]


def _has_requirements(path: Path) -> bool:
    if not path.is_file():
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    return any(line.strip() and not line.lstrip().startswith("#") for line in lines)


def _venv_site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = venv / "lib" / version / "site-packages"
    if not path.is_dir():
        raise PluginInstallError(f"the new virtualenv has no {path}")
    return path


def _worker_constraints() -> str:
    """`name==version` for every distribution of the worker: the plugin's requirements must
    agree with what runmesh itself imports."""
    pins = set()
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name and not name.lower().startswith("runmesh"):
            pins.add(f"{name}=={distribution.version}")
    return "\n".join(sorted(pins)) + "\n"


def _uv() -> str:
    """The uv binary shipped with the `uv` package (a runmesh-worker dependency)."""
    from uv import find_uv_bin

    try:
        return os.fsdecode(find_uv_bin())
    except FileNotFoundError as exc:
        raise PluginInstallError(f"uv is not installed with this worker: {exc}") from exc
