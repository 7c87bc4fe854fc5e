"""Plugin archives: what `runmesh plugin publish` builds, the gateway checks and workers unpack."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from runmesh.core.errors import PluginArchiveError
from runmesh.core.testing import zip_bomb
from runmesh.plugins.archive import (
    MANIFEST_FILE,
    ArchiveLimits,
    build_archive,
    extract_archive,
    inspect_archive,
    sha256_hex,
)
from runmesh.plugins.loader import load_plugin

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "export-csv-plugin"
LIMITS = ArchiveLimits(max_bytes=10 << 20, max_unpacked_bytes=50 << 20, max_files=100)


def example_archive(directory: Path = EXAMPLE) -> bytes:
    plugin = load_plugin(directory)
    return build_archive(
        directory, {name: action.manifest() for name, action in plugin.actions.items()}
    )


def rezip(data: bytes, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    """`data`'s entries plus `extra`."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info, source.read(info))
        for name, content in extra:
            target.writestr(name, content)
    return buffer.getvalue()


def test_an_archive_is_reproducible_and_carries_config_and_manifest() -> None:
    data = example_archive()
    assert data == example_archive()  # same tree, same bytes, same checksum
    contents = inspect_archive(data, LIMITS)
    assert contents.config.code == "export-csv"
    assert contents.sha256 == sha256_hex(data)
    assert set(contents.actions) == {"export"}
    assert contents.actions["export"].method == "job"
    assert "properties" in contents.actions["export"].params_schema
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "config.yaml" in names and MANIFEST_FILE in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_extracting_gives_a_loadable_plugin(tmp_path: Path) -> None:
    config = extract_archive(example_archive(), tmp_path / "plugin", LIMITS)
    assert config.code == "export-csv"
    assert load_plugin(tmp_path / "plugin").actions["export"].cls.__name__ == "CsvExport"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.py", "'..' would write outside"),
        ("plugin/../../evil.py", "'..' would write outside"),
        ("/etc/cron.d/evil", "an absolute path"),
        ("C:/evil.py", "an absolute path"),
        ("plugin\\evil.py", "no NUL or backslash"),
    ],
)
def test_path_escapes_are_refused(tmp_path: Path, name: str, message: str) -> None:
    data = rezip(example_archive(), [(name, b"print('pwned')\n")])
    with pytest.raises(PluginArchiveError, match=message):
        inspect_archive(data, LIMITS)
    with pytest.raises(PluginArchiveError, match=message):
        extract_archive(data, tmp_path / "plugin", LIMITS)
    assert not (tmp_path / "evil.py").exists()


def test_a_symlink_entry_is_refused() -> None:
    link = zipfile.ZipInfo("plugin/passwd")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = rezip(example_archive(), [(link, b"/etc/passwd")])
    with pytest.raises(PluginArchiveError, match="is a symbolic link"):
        inspect_archive(data, LIMITS)


def test_building_refuses_a_symlink_in_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text((EXAMPLE / "config.yaml").read_text())
    (tmp_path / "secrets").symlink_to("/etc/passwd")
    with pytest.raises(PluginArchiveError, match="secrets: is a symbolic link"):
        build_archive(tmp_path, {})


def test_a_zip_bomb_is_refused_from_its_headers_without_inflating_it(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(example_archive())) as source:
        files = {info.filename: source.read(info) for info in source.infolist()}
    data = zip_bomb("plugin/weights.bin", files=files)
    assert len(data) < 2 << 20
    with zipfile.ZipFile(io.BytesIO(data)) as armed:
        assert armed.getinfo("plugin/weights.bin").file_size == 1 << 30
    with pytest.raises(PluginArchiveError, match="unpacks to more than 52,428,800 bytes"):
        inspect_archive(data, LIMITS)
    with pytest.raises(PluginArchiveError, match="unpacks to more than"):
        extract_archive(data, tmp_path / "plugin", LIMITS)
    assert not (tmp_path / "plugin" / "plugin" / "weights.bin").exists()


def test_limits_on_size_and_entry_count() -> None:
    data = example_archive()
    with pytest.raises(PluginArchiveError, match="RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES"):
        inspect_archive(data, ArchiveLimits(max_bytes=100, max_unpacked_bytes=1 << 20, max_files=9))
    many = rezip(data, [(f"data/{index}.txt", b"x") for index in range(20)])
    with pytest.raises(PluginArchiveError, match="RUNMESH_PLUGIN_ARCHIVE_MAX_FILES"):
        inspect_archive(
            many, ArchiveLimits(max_bytes=1 << 20, max_unpacked_bytes=1 << 20, max_files=10)
        )


def test_a_bad_config_or_manifest_is_named() -> None:
    data = example_archive()
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(buffer, "w") as target,
    ):
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "config.yaml":
                content = content.replace(b"method: job", b"method: sometimes")
            target.writestr(info, content)
    with pytest.raises(PluginArchiveError, match=r"config.yaml: actions.export.method: .*\(line"):
        inspect_archive(buffer.getvalue(), LIMITS)

    without_manifest = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(without_manifest, "w") as target,
    ):
        for info in source.infolist():
            if info.filename != MANIFEST_FILE:
                target.writestr(info, source.read(info))
    with pytest.raises(PluginArchiveError, match="runmesh plugin publish"):
        inspect_archive(without_manifest.getvalue(), LIMITS)

    with pytest.raises(PluginArchiveError, match="not a zip archive"):
        inspect_archive(b"PK\x03\x04 not really", LIMITS)


def nul_named(data: bytes, name: str, hidden: str) -> bytes:
    """`data` plus an entry whose raw name is `name` NUL `hidden` (zipfile cuts names at NUL,
    so it writes a placeholder of the same length, patched in both headers)."""
    placeholder = name + "#" + hidden
    crafted = rezip(data, [(placeholder, b"print('pwned')\n")])
    assert crafted.count(placeholder.encode()) == 2  # local header and central directory
    return crafted.replace(placeholder.encode(), f"{name}\x00{hidden}".encode())


def test_an_entry_name_with_a_nul_is_refused_naming_it(tmp_path: Path) -> None:
    data = nul_named(example_archive(), "plugin/ok.py", "../../evil.py")
    assert "plugin/ok.py" in zipfile.ZipFile(io.BytesIO(data)).namelist()  # what zipfile shows
    with pytest.raises(PluginArchiveError, match=r"plugin/ok\.py\\x00\.\./\.\./evil\.py"):
        inspect_archive(data, LIMITS)
    with pytest.raises(PluginArchiveError, match="no NUL"):
        extract_archive(data, tmp_path / "plugin", LIMITS)


def test_publishing_refuses_a_version_without_a_clear_order(tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()
    for path in EXAMPLE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = tmp_path / "plugin" / path.relative_to(EXAMPLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    config = tmp_path / "plugin" / "config.yaml"
    config.write_text(
        "\n".join(
            'version: "1.0.0-1"' if line.startswith("version:") else line
            for line in config.read_text().splitlines()
        )
    )
    data = example_archive(tmp_path / "plugin")
    with pytest.raises(PluginArchiveError, match=r"reads as 1\.0\.0\.post1"):
        inspect_archive(data, LIMITS)
    assert extract_archive(data, tmp_path / "out", LIMITS).version == "1.0.0-1"
