"""Another shell finds the sandbox: when no `runmesh dev` is found, the error names where it
looked and how to point at another one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runmesh.cli.dev_info import DEV_FILE
from runmesh.cli.errors import CliError
from runmesh.cli.settings import require_gateway
from runmesh.core.settings import Settings


def settings_at(home: Path) -> Settings:
    return Settings(_env_file=None, home=home, gateway_url=None, token=None)


def test_no_dev_json_names_the_home_it_looked_in(tmp_path: Path) -> None:
    with pytest.raises(CliError) as caught:
        require_gateway(settings_at(tmp_path / ".runmesh"))
    message = str(caught.value)
    assert str(tmp_path / ".runmesh" / DEV_FILE) in message
    assert "(none)" in message
    assert "RUNMESH_HOME" in message and "RUNMESH_GATEWAY_URL" in message


def test_a_dev_json_left_by_a_dead_sandbox_says_so(tmp_path: Path) -> None:
    home = tmp_path / ".runmesh"
    home.mkdir()
    (home / DEV_FILE).write_text(json.dumps({"pid": 2**22 + 1}))
    with pytest.raises(CliError, match="no longer running"):
        require_gateway(settings_at(home))
