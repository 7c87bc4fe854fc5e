"""The dashboard's files as shipped: small native ES modules loaded from one entry module,
vendored files marked and unedited, all of them in the gateway's wheel.

(What the modules do is tested in Chromium by tests/test_dashboard.py.)
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from runmesh.gateway.routes import dashboard

FOLDER = Path(dashboard.__file__).parents[1] / "dashboard"
GATEWAY = FOLDER.parents[3]  # services/gateway
MAX_MODULE_LINES = 600

VENDORED = {
    # path: SHA-256 of the file as published (everything after the added first line)
    "vendor/uPlot.esm.js": "5dd9b3281aa64b461b42d9945f6adb2649d346502b12281a9ae0d46599a80eba",
    "vendor/uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


def _is_vendored(text: str) -> bool:
    first = text.split("\n", 1)[0]
    return first.startswith(("// Vendored file", "/* Vendored file"))


def test_no_dashboard_module_is_over_600_lines() -> None:
    modules = sorted(FOLDER.rglob("*.js"))
    assert len(modules) > 10  # a module per concern, not one script
    too_long = {}
    for module in modules:
        text = module.read_text()
        if not _is_vendored(text) and text.count("\n") > MAX_MODULE_LINES:
            too_long[str(module.relative_to(FOLDER))] = text.count("\n")
    assert not too_long, f"over {MAX_MODULE_LINES} lines: {too_long}"


@pytest.mark.parametrize(("path", "sha256"), sorted(VENDORED.items()))
def test_vendored_files_say_so_and_are_as_published(path: str, sha256: str) -> None:
    text = (FOLDER / path).read_bytes()
    first, rest = text.split(b"\n", 1)
    assert _is_vendored(first.decode()), path
    assert hashlib.sha256(rest).hexdigest() == sha256, f"{path} was edited after vendoring"
    assert sha256 in (FOLDER / "vendor" / "README.md").read_text()


def test_only_vendored_files_claim_to_be() -> None:
    claimed = {
        str(path.relative_to(FOLDER))
        for path in FOLDER.rglob("*")
        if path.suffix in {".js", ".css"} and _is_vendored(path.read_text())
    }
    assert claimed == set(VENDORED)


def test_the_page_loads_one_entry_module_and_no_classic_script() -> None:
    page = (FOLDER / "index.html").read_text()
    scripts = re.findall(r"<script\b.*?</script>", page, re.DOTALL)
    assert scripts == ['<script type="module" src="/dashboard/main.js"></script>']  # no inline
    assert (FOLDER / "main.js").is_file()


@pytest.mark.slow
def test_the_gateway_wheel_ships_every_dashboard_file(tmp_path: Path) -> None:
    from uv import find_uv_bin

    subprocess.run(
        [find_uv_bin(), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(GATEWAY)],
        check=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("runmesh_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix("runmesh/gateway/dashboard/")
            for name in archive.namelist()
            if name.startswith("runmesh/gateway/dashboard/")
        }
    assert set(dashboard.assets()) <= shipped
    assert {"vendor/uPlot.LICENSE", "vendor/README.md"} <= shipped
