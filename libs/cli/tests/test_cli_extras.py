"""`pip install runmesh-cli` submits, watches and writes plugins; `[dev]` adds the platform.

Each case runs the CLI in a fresh interpreter in which the `[dev]` packages cannot be
imported, as on a machine with the plain CLI installed.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest
from packaging.requirements import Requirement

from runmesh.cli.exits import DEV_EXTRA_PACKAGES

# A fresh interpreter without the `[dev]` packages: their imports fail as uninstalled ones do.
_WITHOUT_DEV_EXTRA = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from runmesh.cli.__main__ import main

    status = main(sys.argv[1:])
    loaded = sorted(m for m in sys.modules if any(m.startswith(b) for b in BLOCKED))
    print("LOADED", loaded, file=sys.stderr)
    sys.exit(status)
    """
).format(blocked=DEV_EXTRA_PACKAGES)


def _cli_without_dev_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_DEV_EXTRA, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["submit", "--help"], ["runs", "--help"], ["plugin", "create", "--help"]],
)
def test_the_plain_cli_needs_no_platform_package(argv: list[str]) -> None:
    result = _cli_without_dev_extra(*argv)

    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "LOADED []" in result.stderr


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["dev", "--no-demo"], "runmesh dev"),
        (["gateway"], "runmesh gateway"),
        (["worker", "upload"], "runmesh worker"),
        (["token", "create", "--tenant", "acme"], "runmesh token create"),
    ],
)
def test_a_platform_command_without_the_dev_extra_says_how_to_get_it(
    argv: list[str], command: str
) -> None:
    result = _cli_without_dev_extra(*argv)

    assert result.returncode == 1
    assert f"`{command}` runs the platform itself" in result.stderr
    assert "pip install 'runmesh-cli[dev]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_dev_extra_lists_every_platform_distribution() -> None:
    requirements = [Requirement(r) for r in importlib.metadata.requires("runmesh-cli") or []]
    base = {r.name for r in requirements if r.marker is None}
    dev = {r.name for r in requirements if r.marker and r.marker.evaluate({"extra": "dev"})}
    platform = {
        "runmesh-sandbox",
        "runmesh-worker",
        "runmesh-gateway",
        "runmesh-upload",
        "runmesh-export",
        "runmesh-to-task",
        "runmesh-train",
    }

    assert not platform & base
    assert platform <= dev
