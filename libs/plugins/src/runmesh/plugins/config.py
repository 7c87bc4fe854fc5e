"""The `config.yaml` schema of a plugin and its loading with errors that name the bad field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runmesh.core.errors import PluginError
from runmesh.core.pipeline_types import ACCEPTED_TYPE_PATTERN, OUTPUT_TYPE_PATTERN
from runmesh.core.run_policy import MAX_ATTEMPTS_BOUND, RETRY_BACKOFF_BOUND_S, Placement, Resources
from runmesh.core.validation import describe_errors

ExecutionMethod = Literal["task", "job", "restapi"]
PackageManager = Literal["pip", "uv"]

CONFIG_FILE = "config.yaml"

AcceptedType = Annotated[str, Field(pattern=ACCEPTED_TYPE_PATTERN, max_length=200)]
OutputType = Annotated[str, Field(pattern=OUTPUT_TYPE_PATTERN, max_length=200)]


class ActionConfig(BaseModel):
    """One action of a plugin: where its class is and how it runs."""

    model_config = ConfigDict(extra="forbid")

    entrypoint: str = Field(
        pattern=r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$",
        description="`module.path.ClassName` or `module.path:ClassName`, relative to the plugin",
    )
    method: ExecutionMethod = "task"
    description: str = ""
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Default timeout of this action's runs, in seconds (a submission's own "
        "timeout_s wins)",
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS_BOUND,
        description="Default starts of this action's runs before they fail (a request's own "
        "wins; a worker applies at most its RUNMESH_MAX_ATTEMPTS)",
    )
    retry_backoff_s: float | None = Field(
        default=None,
        ge=0,
        le=RETRY_BACKOFF_BOUND_S,
        description="Default seconds before the second attempt of this action's runs after a "
        "retryable failure, doubled for each later one (a request's own wins; a worker waits "
        "at most its RUNMESH_RETRY_BACKOFF_MAX_S)",
    )
    placement: Placement | None = Field(
        default=None,
        description="Default pools (in order of preference) and labels of the workers this "
        "action's runs need, e.g. `{labels: [gpu]}` (a submission's own wins)",
    )
    resources: Resources | None = Field(
        default=None,
        description="What this action's runs need of their worker, e.g. `{lock_all: true}` "
        "to run alone on it (a submission's own wins)",
    )
    inputs: dict[str, list[AcceptedType]] = Field(
        default_factory=dict,
        description="Param path (`dataset.export_run`) → the types it takes from an earlier "
        "pipeline step (`dataset:coco`, `dataset:*`)",
    )
    outputs: dict[str, OutputType] = Field(
        default_factory=dict,
        description="`run` or a result key → the type it gives "
        "(`dataset:{params.extra_params.output_format|dm}`); declared outputs are all the "
        "result keys a pipeline step may read",
    )


_IDENTIFIERS = r"[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*"
_VERSION_PATTERN = rf"^\d+(\.\d+){{0,2}}(-{_IDENTIFIERS})?(\+{_IDENTIFIERS})?$"


class PluginConfig(BaseModel):
    """A plugin's `config.yaml` (the Synapse plugin model)."""

    model_config = ConfigDict(extra="ignore")

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)
    name: str = Field(min_length=1)
    version: str = Field(pattern=_VERSION_PATTERN)
    category: str = Field(min_length=1)
    description: str = ""
    data_types: list[str] = Field(default_factory=list)
    annotation_types: list[str] = Field(default_factory=list)
    package_manager: PackageManager = Field(
        default="uv",
        description="What installs a published version's requirements.txt into its virtualenv",
    )
    package_manager_options: list[str] = Field(
        default_factory=list,
        description="Extra installer arguments, e.g. ['--no-index', '--find-links', 'wheels']",
    )
    actions: dict[str, ActionConfig] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: object) -> object:
        if isinstance(value, int | float):
            # YAML reads `version: 1.10` as the number 1.1: coercing would load the wrong one.
            raise ValueError(  # noqa: TRY004 -- pydantic reports only ValueError as a field error
                f"must be a quoted string, not the number {value} "
                "(YAML reads an unquoted 1.10 as 1.1)"
            )
        return value


def parse_config(text: str, *, source: str = CONFIG_FILE) -> PluginConfig:
    """Parse config.yaml text; `PluginError` names the file, the field and what is wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PluginError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PluginError(f"{source}: must be a mapping with code, name, version, actions")
    try:
        return PluginConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(
            f"{describe_errors([error])} (line {line})"
            if (line := yaml_line(text, error["loc"])) is not None
            else describe_errors([error])
            for error in errors
        )
        raise PluginError(f"{source}: {problems}") from exc


def yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML key (or list item) at `loc`, a pydantic error location;
    None when the document has nothing there (a missing field: its path says where)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if key is not None:
                line = key.start_mark.line + 1
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return None
        node = child
    return line


def load_config(directory: Path) -> PluginConfig:
    """Read and validate `<directory>/config.yaml`."""
    path = directory / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"{path}: cannot read plugin config: {exc.strerror}") from exc
    return parse_config(text, source=str(path))
