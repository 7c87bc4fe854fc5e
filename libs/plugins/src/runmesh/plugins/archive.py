"""Plugin archives: built by `runmesh plugin publish`, checked by the gateway, unpacked by
workers. One module so all three apply the same rules.

An archive is a zip of the plugin directory (code, config.yaml, requirements.txt) plus
`runmesh-manifest.json`, the actions' params schemas as the publisher's machine built them:
the gateway validates submissions against them without ever importing plugin code.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import orjson
from pydantic import ValidationError

from runmesh.core.errors import PluginArchiveError, PluginError
from runmesh.core.events import ActionManifest
from runmesh.core.settings_parts import PluginSettings
from runmesh.core.validation import describe_errors
from runmesh.plugins.config import CONFIG_FILE, PluginConfig, parse_config
from runmesh.plugins.versions import publishable_version_problem

MANIFEST_FILE = "runmesh-manifest.json"
REQUIREMENTS_FILE = "requirements.txt"

# Never part of a published plugin: caches, virtualenvs and VCS data of the author's machine.
_SKIPPED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".venv", "venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip's epoch: the same tree always gives the same bytes
_COPY_CHUNK = 1024 * 1024


@dataclass(slots=True, frozen=True)
class ArchiveLimits:
    """What an archive may hold; every reader enforces them, whatever its headers claim."""

    max_bytes: int
    max_unpacked_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, plugins: PluginSettings) -> ArchiveLimits:
        """The `RUNMESH_PLUGIN_ARCHIVE_*` limits."""
        return cls(
            max_bytes=plugins.archive_max_bytes,
            max_unpacked_bytes=plugins.archive_max_unpacked_bytes,
            max_files=plugins.archive_max_files,
        )


@dataclass(slots=True, frozen=True)
class ArchiveContents:
    """A checked archive: its config, the actions' manifests and its checksum."""

    config: PluginConfig
    actions: dict[str, ActionManifest]
    sha256: str
    size: int


def sha256_hex(data: bytes) -> str:
    """The archive checksum runmesh records and verifies."""
    return hashlib.sha256(data).hexdigest()


def build_archive(directory: Path, actions: dict[str, ActionManifest]) -> bytes:
    """Zip `directory` with the actions' manifests; reproducible (sorted, fixed timestamps).

    Raises `PluginArchiveError` for a symlink: the archive must not depend on what it points at.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _plugin_files(directory):
            relative = path.relative_to(directory).as_posix()
            if relative == MANIFEST_FILE:
                continue  # a stale one from an unpacked archive: rebuilt below
            info = zipfile.ZipInfo(relative, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, path.read_bytes())
        manifest = orjson.dumps(
            {"actions": {name: action.model_dump(mode="json") for name, action in actions.items()}},
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
        )
        info = zipfile.ZipInfo(MANIFEST_FILE, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        archive.writestr(info, manifest)
    return buffer.getvalue()


def _plugin_files(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root) / name
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            if path.is_symlink():
                raise PluginArchiveError(
                    f"{path}: is a symbolic link; a plugin archive holds regular files only"
                )
            yield path
        for name in dirs:
            if (Path(root) / name).is_symlink():
                raise PluginArchiveError(
                    f"{Path(root) / name}: is a symbolic link; a plugin archive holds regular "
                    "files only"
                )


def inspect_archive(data: bytes, limits: ArchiveLimits) -> ArchiveContents:
    """Check an archive without unpacking it: entries, sizes, config.yaml and the manifest.

    `PluginArchiveError` says what is wrong in one line (the gateway answers it as a 422).
    """
    with _open_zip(data, limits) as archive:
        _, config, actions = _checked(archive, limits)
    # Only where versions are published: an archive published before this rule still unpacks.
    problem = publishable_version_problem(config.version)
    if problem is not None:
        raise PluginArchiveError(f"{CONFIG_FILE}: {problem}")
    return ArchiveContents(
        config=config,
        actions=actions,
        sha256=sha256_hex(data),
        size=len(data),
    )


def extract_archive(data: bytes, destination: Path, limits: ArchiveLimits) -> PluginConfig:
    """Unpack an archive into `destination` (which must not exist yet).

    The same checks as `inspect_archive` first, and sizes counted on the bytes actually
    written, so a zip whose headers understate its entries is stopped at the limit.
    """
    with _open_zip(data, limits) as archive:
        infos, config, _ = _checked(archive, limits)
        destination.mkdir(parents=True)
        root = destination.resolve()
        written = 0
        for info in infos:
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):  # already refused by the name checks
                raise PluginArchiveError(f"{info.filename!r}: escapes the plugin directory")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                while chunk := source.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > limits.max_unpacked_bytes:
                        raise _too_big(limits)
                    sink.write(chunk)
    return config


def _checked(
    archive: zipfile.ZipFile, limits: ArchiveLimits
) -> tuple[list[zipfile.ZipInfo], PluginConfig, dict[str, ActionManifest]]:
    """The entries, config and actions of an open archive, every rule checked."""
    infos = _checked_entries(archive, limits)
    names = {info.filename for info in infos}
    if CONFIG_FILE not in names:
        raise PluginArchiveError(f"the archive has no {CONFIG_FILE} at its top level")
    if MANIFEST_FILE not in names:
        raise PluginArchiveError(
            f"the archive has no {MANIFEST_FILE}: build it with `runmesh plugin publish`"
        )
    try:
        config = parse_config(
            _read_entry(archive, CONFIG_FILE, limits).decode("utf-8"), source=CONFIG_FILE
        )
    except UnicodeDecodeError as exc:
        raise PluginArchiveError(f"{CONFIG_FILE}: not UTF-8 text ({exc})") from exc
    except PluginError as exc:
        raise PluginArchiveError(str(exc)) from exc
    actions = _manifest_actions(_read_entry(archive, MANIFEST_FILE, limits), config)
    return infos, config, actions


def _open_zip(data: bytes, limits: ArchiveLimits) -> zipfile.ZipFile:
    if len(data) > limits.max_bytes:
        raise PluginArchiveError(
            f"the archive is {len(data):,} bytes; the limit is {limits.max_bytes:,} "
            "(RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES)"
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PluginArchiveError(f"not a zip archive ({exc})") from exc


def _checked_entries(archive: zipfile.ZipFile, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise PluginArchiveError(
            f"the archive holds {len(infos):,} entries; the limit is {limits.max_files:,} "
            "(RUNMESH_PLUGIN_ARCHIVE_MAX_FILES)"
        )
    declared = 0
    for info in infos:
        # `filename` stops at a NUL (zipfile drops the rest); the raw name is what other
        # unzip tools see, so a NUL anywhere in it is refused.
        _check_name(info.orig_filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PluginArchiveError(
                f"{info.filename!r} is a symbolic link; a plugin archive holds regular files only"
            )
        # Many zip writers (Python's among them) set permissions without a file type.
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise PluginArchiveError(f"{info.filename!r} is not a regular file")
        if info.flag_bits & 0x1:
            raise PluginArchiveError(f"{info.filename!r} is encrypted")
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise _too_big(limits)
    return infos


def _check_name(name: str) -> None:
    if "\\" in name or "\x00" in name:
        raise PluginArchiveError(f"{name!r}: entry names use '/' and no NUL or backslash")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise PluginArchiveError(f"{name!r}: an absolute path; entries must be relative")
    if ".." in path.parts:
        raise PluginArchiveError(f"{name!r}: '..' would write outside the plugin directory")


def _too_big(limits: ArchiveLimits) -> PluginArchiveError:
    return PluginArchiveError(
        f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes "
        "(RUNMESH_PLUGIN_ARCHIVE_MAX_UNPACKED_BYTES)"
    )


def _read_entry(archive: zipfile.ZipFile, name: str, limits: ArchiveLimits) -> bytes:
    """An entry's bytes, reading at most the unpacked limit whatever its header says."""
    with archive.open(name) as entry:
        data = entry.read(limits.max_unpacked_bytes + 1)
    if len(data) > limits.max_unpacked_bytes:
        raise _too_big(limits)
    return data


def _manifest_actions(raw: bytes, config: PluginConfig) -> dict[str, ActionManifest]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PluginArchiveError(f"{MANIFEST_FILE}: not valid JSON ({exc})") from exc
    entries = document.get("actions") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise PluginArchiveError(f"{MANIFEST_FILE}: must be an object with 'actions'")
    actions: dict[str, ActionManifest] = {}
    for name, entry in entries.items():
        try:
            actions[name] = ActionManifest.model_validate(entry)
        except ValidationError as exc:
            problems = describe_errors(exc.errors(include_url=False), root=f"actions.{name}")
            raise PluginArchiveError(f"{MANIFEST_FILE}: {problems}") from exc
    if set(actions) != set(config.actions):
        raise PluginArchiveError(
            f"{MANIFEST_FILE} describes actions {sorted(actions)} but {CONFIG_FILE} declares "
            f"{sorted(config.actions)}: rebuild the archive with `runmesh plugin publish`"
        )
    for name, action in actions.items():
        if action.method != config.actions[name].method:
            raise PluginArchiveError(
                f"{MANIFEST_FILE}: action {name!r} is {action.method!r} there but "
                f"{config.actions[name].method!r} in {CONFIG_FILE}"
            )
    return actions
