"""`runmesh plugin validate`: a worker's checks, from the command line, without a sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from runmesh.cli.__main__ import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_a_valid_plugin_is_reported_with_its_actions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugin", "validate", str(EXAMPLES / "export-csv-plugin")]) == 0
    assert capsys.readouterr().out.strip() == "export-csv@0.1.0 (export) is valid: export (job)"


def test_a_bad_config_names_the_file_the_field_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_text(
        "code: bad\nname: Bad\nversion: 1.0.0\ncategory: export\n"
        "actions:\n  run:\n    entrypoint: plugin.Run\n    method: sometimes\n"
    )
    assert main(["plugin", "validate", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"runmesh: {tmp_path}/config.yaml: actions.run.method: ")
    assert error.endswith("(line 8)")


def test_an_entrypoint_that_does_not_import_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_text(
        "code: broken\nname: Broken\nversion: 1.0.0\ncategory: export\n"
        "actions:\n  run:\n    entrypoint: plugin.Run\n    method: job\n"
    )
    (tmp_path / "plugin.py").write_text("import not_a_module_anywhere\n")
    assert main(["plugin", "validate", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "actions.run.entrypoint 'plugin.Run'" in error
    assert "not_a_module_anywhere" in error
