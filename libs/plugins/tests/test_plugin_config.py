"""Plugin `config.yaml` validation and plugin loading, with errors that name the field at fault."""

from __future__ import annotations

import re
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runmesh.core.errors import PluginError
from runmesh.core.events import EventPayload
from runmesh.plugins import Action, LoadedPlugin, Run, load_config, load_plugin, parse_config
from runmesh.plugins.config import ActionConfig, PluginConfig

VALID = """\
code: demo
name: Demo plugin
version: 1.2.0
category: export
description: Exports things.
data_types: [image]
annotation_types: [bbox, polygon]
actions:
  train:
    entrypoint: plugin.actions.Train
    method: job
    description: Trains a model.
  check:
    entrypoint: plugin.actions:Check
"""

ACTIONS = '''\
"""Actions of a test plugin."""

from __future__ import annotations

from pydantic import BaseModel, Field

from runmesh.plugins import Action

from .helpers import WHICH


class TrainParams(BaseModel):
    epochs: int = Field(default=1, ge=1, le=100)
    name: str


class Train(Action):
    """Trains a model of plugin {which}."""

    name = "train"
    params_model = TrainParams
    progress_categories = {{
        "train": {{"description": "Training", "proportion": 80}},
        "eval": "Eval",
    }}
    metrics_categories = {{"loss": "Loss curve"}}

    def start(self) -> dict[str, object]:
        return {{"which": WHICH}}


class Check(Action):
    """Checks the data."""

    async def start(self) -> None:
        return None


class NotAnAction:
    def start(self) -> None:
        return None


NOT_A_CLASS = 3


class Abstract(Action):
    """Has no start()."""
'''


class ListSink:
    """A `RunSink` that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, EventPayload]] = []

    def emit(self, event_type: str, payload: EventPayload) -> None:
        self.events.append((event_type, payload))


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    """Drop the synthetic `runmesh_plugins.*` modules a test imported."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("runmesh_plugins."):
            del sys.modules[name]


def make_plugin(
    root: Path,
    *,
    config: str = VALID,
    which: str = "A",
    extra_modules: dict[str, str] | None = None,
) -> Path:
    """Write a plugin directory: config.yaml and a `plugin` package with `actions.py`."""
    directory = root / f"plugin-{uuid.uuid4().hex[:8]}"
    package = directory / "plugin"
    package.mkdir(parents=True)
    (directory / "config.yaml").write_text(config, encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "helpers.py").write_text(f"WHICH = {which!r}\n", encoding="utf-8")
    (package / "actions.py").write_text(ACTIONS.format(which=which), encoding="utf-8")
    for name, text in (extra_modules or {}).items():
        (package / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def config_with(action_yaml: str) -> str:
    """VALID's plugin fields with only the given `actions:` block."""
    head = VALID.split("actions:")[0]
    return head + "actions:\n" + textwrap.indent(textwrap.dedent(action_yaml), "  ")


def run_for(cls: type[Action]) -> Run:
    return Run(
        run_id=uuid.uuid4(),
        attempt=1,
        sink=ListSink(),
        progress_categories=cls.progress_categories,
        metrics_categories=cls.metrics_categories,
    )


# -- parse_config -----------------------------------------------------------------------------


def test_a_valid_config_parses() -> None:
    config = parse_config(VALID)

    assert config.code == "demo"
    assert config.name == "Demo plugin"
    assert config.version == "1.2.0"
    assert config.category == "export"
    assert config.description == "Exports things."
    assert config.data_types == ["image"]
    assert config.annotation_types == ["bbox", "polygon"]
    assert config.actions == {
        "train": ActionConfig(
            entrypoint="plugin.actions.Train", method="job", description="Trains a model."
        ),
        "check": ActionConfig(entrypoint="plugin.actions:Check", method="task", description=""),
    }


def test_typed_inputs_and_outputs_parse_and_reach_the_manifest() -> None:
    typed = VALID.replace(
        "    description: Trains a model.\n",
        "    description: Trains a model.\n"
        "    timeout_s: 3600\n"
        "    inputs: {dataset.export_run: ['dataset:*']}\n"
        "    outputs: {run: 'model:{params.kind|mlp}', model_id: 'model:detector'}\n",
    )
    action = parse_config(typed).actions["train"]
    assert action.inputs == {"dataset.export_run": ["dataset:*"]}
    assert action.timeout_s == 3600
    assert action.outputs == {"run": "model:{params.kind|mlp}", "model_id": "model:detector"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outputs", "{run: 'Dataset'}"),
        ("outputs", "{run: 'dataset:{params.x'}"),
        ("outputs", "{run: 'a b'}"),
        ("inputs", "{model: ['model:{params.x}']}"),
        ("inputs", "{model: 'model:x'}"),
    ],
)
def test_malformed_types_are_refused_naming_the_field(field: str, value: str) -> None:
    bad = VALID.replace("    method: job\n", f"    method: job\n    {field}: {value}\n")
    with pytest.raises(PluginError, match=rf"actions\.train\.{field}"):
        parse_config(bad)


def test_unknown_top_level_keys_are_ignored() -> None:
    config = parse_config(VALID + "homepage: https://example.com\n")

    assert "homepage" not in config.model_dump()
    assert config.code == "demo"


def test_bad_yaml_names_the_file() -> None:
    with pytest.raises(PluginError, match=r"^plugins/x/config\.yaml: not valid YAML: "):
        parse_config("code: [unclosed\n", source="plugins/x/config.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_a_config_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(PluginError) as caught:
        parse_config(text)

    assert str(caught.value) == ("config.yaml: must be a mapping with code, name, version, actions")


def test_missing_actions_names_the_field() -> None:
    with pytest.raises(PluginError, match=r"^my/config\.yaml: actions: Field required$"):
        parse_config(VALID.split("actions:")[0], source="my/config.yaml")


def test_empty_actions_are_refused() -> None:
    with pytest.raises(PluginError, match=r"^config\.yaml: actions: .*at least 1 item"):
        parse_config(VALID.split("actions:")[0] + "actions: {}\n")


def test_a_bad_method_names_the_file_and_the_field_path() -> None:
    text = config_with(
        """
        train:
          entrypoint: plugin.actions.Train
          method: lambda
        """
    )

    with pytest.raises(PluginError) as caught:
        parse_config(text, source="/srv/plugins/demo/config.yaml")

    message = str(caught.value)
    assert message.startswith("/srv/plugins/demo/config.yaml: actions.train.method: ")
    assert "'task', 'job' or 'restapi'" in message


def test_an_unknown_action_key_is_refused_with_its_path() -> None:
    text = config_with(
        """
        train:
          entrypoint: plugin.actions.Train
          retries: 3
        """
    )

    with pytest.raises(
        PluginError, match=r"actions\.train\.retries: Extra inputs are not permitted"
    ):
        parse_config(text)


def test_every_problem_is_listed() -> None:
    text = VALID.replace("code: demo", "code: Demo!").replace("version: 1.2.0", "version: v1")

    with pytest.raises(PluginError) as caught:
        parse_config(text)

    problems = str(caught.value).removeprefix("config.yaml: ").split("; ")
    assert [p.split(":")[0] for p in problems] == ["code", "version"]


@pytest.mark.parametrize("code", ["demo", "d", "my-plugin_2", "0day", "a" * 100])
def test_good_codes(code: str) -> None:
    assert parse_config(VALID.replace("code: demo", f"code: {code!r}")).code == code


@pytest.mark.parametrize("code", ["Demo", "-demo", "_demo", "my plugin", "demo.x", "", "a" * 101])
def test_bad_codes_name_the_field(code: str) -> None:
    with pytest.raises(PluginError, match=r"^config\.yaml: code: "):
        parse_config(VALID.replace("code: demo", f"code: {code!r}"))


@pytest.mark.parametrize("version", ["1", "1.2", "1.2.3", "2.0.0-rc1", "1.0.0+build.7", "10.20.30"])
def test_good_versions(version: str) -> None:
    assert parse_config(VALID.replace("version: 1.2.0", f"version: {version!r}")).version == version


@pytest.mark.parametrize(
    "version", ["v1", "latest", "", "1.2.3 ", "-1", ".1", "1_0", "1.2.3-", "1.x", "1..2", "1.2+"]
)
def test_bad_versions_name_the_field(version: str) -> None:
    with pytest.raises(PluginError, match=r"^config\.yaml: version: String should match pattern"):
        parse_config(VALID.replace("version: 1.2.0", f"version: {version!r}"))


def test_a_numeric_yaml_version_is_refused_rather_than_coerced() -> None:
    # `version: 1.10` is the float 1.1 in YAML; refusing it avoids silently loading "1.1".
    with pytest.raises(
        PluginError, match=r"^config\.yaml: version: .*must be a quoted string, not the number 1\.1"
    ):
        parse_config(VALID.replace("version: 1.2.0", "version: 1.10"))


@pytest.mark.parametrize(
    "entrypoint",
    ["plugin.actions.Train", "plugin.actions:Train", "actions.Train", "pkg.sub_1.mod:_Private"],
)
def test_good_entrypoints(entrypoint: str) -> None:
    text = config_with(f"train:\n  entrypoint: {entrypoint!r}\n")
    assert parse_config(text).actions["train"].entrypoint == entrypoint


@pytest.mark.parametrize(
    "entrypoint",
    ["Train", "plugin/actions.Train", "plugin.actions.", "1plugin.Train", "plugin.actions:1X", ""],
)
def test_bad_entrypoints_name_the_field(entrypoint: str) -> None:
    text = config_with(f"train:\n  entrypoint: {entrypoint!r}\n")

    with pytest.raises(PluginError, match=r"^config\.yaml: actions\.train\.entrypoint: "):
        parse_config(text)


@pytest.mark.parametrize("field", ["code", "name", "version", "category"])
def test_each_required_field_is_named_when_missing(field: str) -> None:
    lines = [line for line in VALID.splitlines() if not line.startswith(f"{field}:")]

    with pytest.raises(PluginError, match=rf"^config\.yaml: {field}: Field required$"):
        parse_config("\n".join(lines))


# -- load_config ------------------------------------------------------------------------------


def test_load_config_reads_the_directory(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(VALID, encoding="utf-8")

    assert load_config(tmp_path) == parse_config(VALID)


def test_load_config_of_a_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"

    with pytest.raises(PluginError) as caught:
        load_config(tmp_path)

    assert str(caught.value) == f"{path}: cannot read plugin config: No such file or directory"


def test_load_config_errors_name_the_full_path(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(VALID.replace("method: job", "method: x"), "utf-8")

    with pytest.raises(PluginError, match=rf"^{re.escape(str(tmp_path))}/config\.yaml: actions"):
        load_config(tmp_path)


# -- load_plugin ------------------------------------------------------------------------------


def test_load_plugin_imports_every_action(tmp_path: Path) -> None:
    directory = make_plugin(tmp_path)

    plugin = load_plugin(directory)

    assert isinstance(plugin, LoadedPlugin)
    assert plugin.directory == directory.resolve()
    assert plugin.ref == "demo@1.2.0"
    assert (plugin.code, plugin.version, plugin.builtin) == ("demo", "1.2.0", False)
    assert sorted(plugin.actions) == ["check", "train"]
    train = plugin.action("train")
    assert train.cls.__name__ == "Train"
    assert issubclass(train.cls, Action)
    assert train.method == "job"
    assert plugin.action("check").method == "task"
    assert train.cls(train.cls.params_model(name="x"), run_for(train.cls)).start() == {"which": "A"}


def test_load_plugin_marks_builtins(tmp_path: Path) -> None:
    assert load_plugin(make_plugin(tmp_path), builtin=True).builtin is True


def test_an_unknown_action_names_the_plugin_and_its_actions(tmp_path: Path) -> None:
    plugin = load_plugin(make_plugin(tmp_path))

    with pytest.raises(PluginError) as caught:
        plugin.action("predict")

    assert str(caught.value) == (
        "plugin demo@1.2.0 has no action 'predict'; its actions: check, train"
    )


def test_the_manifest_carries_params_schema_and_categories(tmp_path: Path) -> None:
    plugin = load_plugin(make_plugin(tmp_path), builtin=True)

    manifest = plugin.manifest(service="export", worker="worker-1")

    assert (manifest.code, manifest.name, manifest.version) == ("demo", "Demo plugin", "1.2.0")
    assert (manifest.category, manifest.service, manifest.worker) == (
        "export",
        "export",
        "worker-1",
    )
    assert manifest.builtin is True
    assert manifest.description == "Exports things."
    assert manifest.data_types == ["image"]
    assert manifest.annotation_types == ["bbox", "polygon"]
    assert sorted(manifest.actions) == ["check", "train"]

    train = manifest.actions["train"]
    assert train.method == "job"
    assert train.description == "Trains a model."  # config.yaml's description wins
    schema = train.params_schema
    assert schema["title"] == "TrainParams"
    assert schema["required"] == ["name"]
    assert schema["properties"]["epochs"] == {
        "default": 1,
        "maximum": 100,
        "minimum": 1,
        "title": "Epochs",
        "type": "integer",
    }
    # `order`: the declaration's order, which the stored (JSONB) manifest would lose.
    assert train.progress_categories == {
        "train": {"description": "Training", "proportion": 80, "order": 0},
        "eval": {"description": "Eval", "order": 1},
    }
    assert train.metrics_categories == {"loss": {"description": "Loss curve", "order": 0}}

    check = manifest.actions["check"]
    assert check.method == "task"
    assert check.description == "Checks the data."  # no description in config: the docstring
    assert check.params_schema["title"] == "NoParams"
    assert check.params_schema["additionalProperties"] is False
    assert check.progress_categories == {}


def _entrypoint_error(
    tmp_path: Path, entrypoint: str, extra_modules: dict[str, str] | None = None
) -> tuple[str, str]:
    """Load a plugin whose one action has `entrypoint`; its error and the expected prefix."""
    directory = make_plugin(
        tmp_path,
        config=config_with(f"train:\n  entrypoint: {entrypoint}\n"),
        extra_modules=extra_modules,
    )
    with pytest.raises(PluginError) as caught:
        load_plugin(directory)
    where = f"{directory.resolve()}/config.yaml: actions.train.entrypoint {entrypoint!r}: "
    return str(caught.value), where


def test_a_missing_entrypoint_module_names_the_field(tmp_path: Path) -> None:
    message, where = _entrypoint_error(tmp_path, "plugin.missing.Train")

    assert message.startswith(where + "module 'plugin.missing' not found (")


def test_a_missing_platform_module_says_which_install_has_it(tmp_path: Path) -> None:
    # What a CLI-only install meets in the upload or train templates (runmesh.upload, ...).
    message, where = _entrypoint_error(
        tmp_path, "plugin.upload.Train", {"upload.py": "from runmesh.not_installed import Base\n"}
    )

    assert message == (
        where + "it imports runmesh.not_installed, which comes with the platform, not with the "
        "CLI alone: install the CLI with its dev extra (pip install 'runmesh-cli[dev]')"
    )


def test_a_missing_attribute_names_the_field(tmp_path: Path) -> None:
    message, where = _entrypoint_error(tmp_path, "plugin.actions.Nope")

    assert message == where + "'plugin.actions' has no attribute 'Nope'"


@pytest.mark.parametrize("attr", ["NotAnAction", "NOT_A_CLASS", "BaseModel"])
def test_a_non_action_names_the_field(tmp_path: Path, attr: str) -> None:
    message, where = _entrypoint_error(tmp_path, f"plugin.actions:{attr}")

    assert message == where + f"{attr} is not a subclass of runmesh.plugins.Action"


def test_an_abstract_action_names_the_field(tmp_path: Path) -> None:
    message, where = _entrypoint_error(tmp_path, "plugin.actions.Abstract")

    assert message == where + "Abstract does not implement start()"


def test_an_import_error_in_plugin_code_names_the_field(tmp_path: Path) -> None:
    broken = 'raise RuntimeError("boom at import")\n'
    message, where = _entrypoint_error(
        tmp_path, "plugin.broken.Train", extra_modules={"broken.py": broken}
    )

    assert message == where + "importing 'plugin.broken' failed: RuntimeError('boom at import')"


def test_a_params_model_without_json_schema_is_refused(tmp_path: Path) -> None:
    module = """\
        from pydantic import BaseModel, ConfigDict

        from runmesh.plugins import Action


        class Opaque:
            pass


        class Params(BaseModel):
            model_config = ConfigDict(arbitrary_types_allowed=True)
            thing: Opaque


        class Odd(Action):
            params_model = Params

            def start(self) -> None:
                return None
        """
    directory = make_plugin(
        tmp_path,
        config=config_with("odd:\n  entrypoint: plugin.odd.Odd\n"),
        extra_modules={"odd.py": module},
    )

    with pytest.raises(PluginError) as caught:
        load_plugin(directory)

    assert str(caught.value).startswith(
        f"{directory.resolve()}/config.yaml: action 'odd': params model Params has no JSON schema: "
    )


def test_load_plugin_of_a_directory_without_config_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(
        PluginError, match=rf"^{re.escape(str(tmp_path))}/config\.yaml: cannot read"
    ):
        load_plugin(tmp_path)


def test_two_plugins_with_the_same_module_names_load_side_by_side(tmp_path: Path) -> None:
    first = make_plugin(tmp_path, which="A")
    second = make_plugin(tmp_path, which="B", config=VALID.replace("code: demo", "code: other"))

    a = load_plugin(first)
    b = load_plugin(second)

    cls_a, cls_b = a.action("train").cls, b.action("train").cls
    assert cls_a is not cls_b
    assert cls_a.__module__ != cls_b.__module__
    assert cls_a.__module__.endswith(".plugin.actions")
    assert cls_a.__doc__ == "Trains a model of plugin A."
    assert cls_b.__doc__ == "Trains a model of plugin B."
    assert cls_a(cls_a.params_model(name="x"), run_for(cls_a)).start() == {"which": "A"}
    assert cls_b(cls_b.params_model(name="x"), run_for(cls_b)).start() == {"which": "B"}
    # Nothing leaked into the top-level module namespace.
    assert "plugin.actions" not in sys.modules


def test_two_copies_of_one_plugin_version_in_different_directories_stay_apart(
    tmp_path: Path,
) -> None:
    a = load_plugin(make_plugin(tmp_path, which="A"))
    b = load_plugin(make_plugin(tmp_path, which="B"))

    assert a.ref == b.ref == "demo@1.2.0"
    assert a.action("train").cls.__module__ != b.action("train").cls.__module__
    assert a.action("train").cls.__doc__ != b.action("train").cls.__doc__


def test_loading_a_plugin_twice_reuses_its_modules(tmp_path: Path) -> None:
    directory = make_plugin(tmp_path)

    assert load_plugin(directory).action("train").cls is load_plugin(directory).action("train").cls


def test_plugin_config_is_a_plain_model() -> None:
    # LoadedPlugin objects may be built from a PluginConfig directly (the registry tests do).
    config = PluginConfig(
        code="x",
        name="X",
        version="1.0.0",
        category="c",
        actions={"a": ActionConfig(entrypoint="plugin.a.A")},
    )
    assert config.actions["a"].method == "task"


def test_a_field_error_gives_the_line_of_the_field() -> None:
    text = config_with(
        """
        train:
          entrypoint: plugin.actions.Train
          method: lambda
        """
    )
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "method: lambda" in row)

    with pytest.raises(PluginError) as caught:
        parse_config(text)

    assert str(caught.value).endswith(f"(line {line})")
