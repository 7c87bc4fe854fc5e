"""Pipeline definition files (YAML or JSON), and the ones the CLI ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runmesh.cli.errors import CliError

DEMO_PIPELINE = Path(__file__).parent / "pipelines" / "demo.yaml"
"""The `runmesh dev` demo's pipeline (examples/pipelines/demo.yaml links to it)."""


def load_definition(path: Path) -> dict[str, Any]:
    """A pipeline definition from a YAML or JSON file (JSON is YAML)."""
    import yaml  # imported here, not above, to keep `runmesh --help` fast

    try:
        text = path.expanduser().read_text()
    except OSError as exc:
        raise CliError(f"cannot read pipeline file {path}: {exc.strerror}") from exc
    try:
        definition = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML or JSON: {exc}") from exc
    if not isinstance(definition, dict):
        raise CliError(f"{path} must hold one pipeline definition (a mapping)")
    return definition
