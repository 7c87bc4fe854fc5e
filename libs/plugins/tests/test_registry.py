"""`PluginRegistry`: which plugin and action a request's `plugin` and `action` resolve to."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runmesh.core.errors import PluginError, UnknownPluginError
from runmesh.plugins import (
    Action,
    ActionConfig,
    LoadedAction,
    LoadedPlugin,
    PluginConfig,
    PluginRegistry,
    Run,
)


class NullSink:
    def emit(self, event_type: str, payload: object) -> None:
        raise AssertionError(f"unexpected {event_type}")


class Noop(Action):
    """Does nothing."""

    def start(self) -> None:
        return None


def plugin(
    ref: str,
    category: str = "export",
    *,
    actions: tuple[str, ...] = ("run",),
    builtin: bool = False,
) -> LoadedPlugin:
    code, _, version = ref.partition("@")
    config = PluginConfig(
        code=code,
        name=code.title(),
        version=version or "1.0.0",
        category=category,
        actions={name: ActionConfig(entrypoint="plugin.actions.Noop") for name in actions},
    )
    return LoadedPlugin(
        config=config,
        directory=Path("/plugins") / ref,
        actions={
            name: LoadedAction(name=name, cls=Noop, config=config.actions[name]) for name in actions
        },
        builtin=builtin,
    )


def test_resolve_by_code() -> None:
    coco = plugin("coco@1.0.0")
    registry = PluginRegistry([coco, plugin("yolo@1.0.0")])

    assert registry.resolve("coco", "export") is coco


def test_resolve_by_code_and_version() -> None:
    old, new = plugin("coco@1.0.0"), plugin("coco@2.0.0")
    registry = PluginRegistry([old, new])

    assert registry.resolve("coco@1.0.0", "export") is old
    assert registry.resolve("coco@2.0.0", "export") is new


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["1.9.0", "1.10.0"], "1.10.0"),
        (["1.10.0", "1.9.0"], "1.10.0"),
        (["1.2.0", "1.2.10", "1.2.9"], "1.2.10"),
        (["2.0.0-rc1", "2.0.0", "1.99.99"], "2.0.0"),
        (["2.0.0", "2.0.0-rc1"], "2.0.0"),
        (["2.0.0-rc1", "1.99.0"], "2.0.0-rc1"),
        (["2.0.0-rc1", "2.0.0-rc2"], "2.0.0-rc2"),
        (["9", "10"], "10"),
        (["1.9", "1.10"], "1.10"),
        (["0.9.9", "1"], "1"),
    ],
)
def test_a_bare_code_resolves_to_the_latest_version(versions: list[str], latest: str) -> None:
    registry = PluginRegistry(plugin(f"coco@{v}") for v in versions)

    assert registry.resolve("coco", "export").version == latest


def test_numeric_pre_release_identifiers_order_numerically() -> None:
    registry = PluginRegistry(plugin(f"coco@{v}") for v in ["2.0.0-rc.9", "2.0.0-rc.10"])

    assert registry.resolve("coco", "export").version == "2.0.0-rc.10"


def test_the_latest_is_kept_up_to_date_as_versions_are_added() -> None:
    registry = PluginRegistry()
    registry.add(plugin("coco@1.10.0"))
    assert registry.resolve("coco", "export").version == "1.10.0"

    registry.add(plugin("coco@1.9.0"))  # older: the latest stays
    assert registry.resolve("coco", "export").version == "1.10.0"

    registry.add(plugin("coco@1.11.0-beta"))
    assert registry.resolve("coco", "export").version == "1.11.0-beta"


def test_adding_the_same_ref_again_replaces_it() -> None:
    first, second = plugin("coco@1.0.0"), plugin("coco@1.0.0", actions=("other",))
    registry = PluginRegistry([first, second])

    assert registry.resolve("coco@1.0.0", "export") is second
    assert registry.plugins() == [second]


def test_none_resolves_to_the_categorys_builtin() -> None:
    builtin = plugin("native@1.0.0", builtin=True)
    registry = PluginRegistry(
        [
            plugin("coco@1.0.0"),
            builtin,
            plugin("yolo@3.0.0"),
            plugin("other-builtin@1.0.0", category="upload", builtin=True),
        ]
    )

    assert registry.resolve(None, "export") is builtin


def test_none_resolves_to_the_only_plugin_of_a_category() -> None:
    only = plugin("coco@1.0.0")
    registry = PluginRegistry([only, plugin("yolo@1.0.0", category="upload")])

    assert registry.resolve(None, "export") is only


def test_none_with_several_non_builtin_plugins_is_an_error() -> None:
    registry = PluginRegistry([plugin("coco@1.0.0"), plugin("yolo@2.0.0")])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve(None, "export")

    assert str(caught.value) == (
        "no plugin given and category 'export' has several; known: coco@1.0.0, yolo@2.0.0"
    )


def test_none_in_a_category_without_plugins_is_an_error() -> None:
    registry = PluginRegistry([plugin("coco@1.0.0")])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve(None, "train")

    assert str(caught.value) == (
        "no plugin given and category 'train' has no plugins; known: coco@1.0.0"
    )


def test_an_empty_registry_says_none_are_known() -> None:
    with pytest.raises(UnknownPluginError, match=r"known: none$"):
        PluginRegistry().resolve("coco", "export")


def test_an_unknown_code_names_the_known_plugins() -> None:
    registry = PluginRegistry([plugin("yolo@2.0.0"), plugin("coco@1.0.0"), plugin("coco@1.1.0")])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve("voc@1.0.0", "export")

    assert str(caught.value) == ("unknown plugin 'voc'; known: coco@1.0.0, coco@1.1.0, yolo@2.0.0")


def test_an_unknown_version_names_the_known_versions_in_order() -> None:
    registry = PluginRegistry(plugin(f"coco@{v}") for v in ["1.10.0", "1.9.0", "2.0.0-rc1"])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve("coco@3.0.0", "export")

    assert str(caught.value) == (
        "plugin 'coco' has no version '3.0.0'; known versions: 1.9.0, 1.10.0, 2.0.0-rc1"
    )


def test_a_plugin_of_another_category_is_refused() -> None:
    registry = PluginRegistry([plugin("coco@1.0.0", category="upload")])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve("coco", "export")

    assert str(caught.value) == "plugin coco@1.0.0 is a 'upload' plugin, not 'export'"


def test_the_category_is_checked_for_explicit_versions_too() -> None:
    registry = PluginRegistry([plugin("coco@1.0.0", category="upload")])

    with pytest.raises(UnknownPluginError, match="is a 'upload' plugin, not 'export'"):
        registry.resolve("coco@1.0.0", "export")


def test_resolve_action_returns_the_plugin_and_its_action() -> None:
    coco = plugin("coco@1.0.0", actions=("export", "validate"))
    registry = PluginRegistry([coco])

    found, action = registry.resolve_action("coco", "export", "validate")

    assert found is coco
    assert action is coco.actions["validate"]
    assert action.cls is Noop


def test_an_unknown_action_names_the_known_actions() -> None:
    registry = PluginRegistry([plugin("coco@1.0.0", actions=("validate", "export"))])

    with pytest.raises(UnknownPluginError) as caught:
        registry.resolve_action("coco", "export", "train")

    assert str(caught.value) == (
        "plugin coco@1.0.0 has no action 'train'; known actions: export, validate"
    )


def test_resolution_errors_are_plugin_errors() -> None:
    # Callers that handle PluginError (the worker's boundary) also see unknown plugins.
    assert issubclass(UnknownPluginError, PluginError)


def test_plugins_lists_every_version_optionally_by_category() -> None:
    a, b, c = plugin("coco@1.0.0"), plugin("coco@2.0.0"), plugin("yolo@1.0.0", category="upload")
    registry = PluginRegistry([a, b, c])

    assert registry.plugins() == [a, b, c]
    assert registry.plugins("export") == [a, b]
    assert registry.plugins("upload") == [c]
    assert registry.plugins("train") == []


# -- from plugin directories ------------------------------------------------------------------

CONFIG = """\
code: {code}
name: {code}
version: {version}
category: export
actions:
  run:
    entrypoint: plugin.actions.Run
"""

ACTIONS = """\
from runmesh.plugins import Action


class Run(Action):
    def start(self) -> dict[str, str]:
        return {"version": "%s"}
"""


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("runmesh_plugins."):
            del sys.modules[name]


def write_plugin(directory: Path, code: str, version: str) -> Path:
    (directory / "plugin").mkdir(parents=True)
    (directory / "config.yaml").write_text(CONFIG.format(code=code, version=version), "utf-8")
    (directory / "plugin" / "__init__.py").write_text("", "utf-8")
    (directory / "plugin" / "actions.py").write_text(ACTIONS % version, "utf-8")
    return directory


def test_scan_loads_a_directory_of_plugins_and_single_plugins(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    write_plugin(root / "coco-1.9", "coco", "1.9.0")
    write_plugin(root / "coco-1.10", "coco", "1.10.0")
    (root / "not-a-plugin").mkdir()
    (root / "README.md").write_text("not a plugin either", "utf-8")
    single = write_plugin(tmp_path / "yolo", "yolo", "0.1.0")

    registry = PluginRegistry()
    found = registry.scan([root, single])

    assert sorted(p.ref for p in found) == ["coco@1.10.0", "coco@1.9.0", "yolo@0.1.0"]
    latest = registry.resolve("coco", "export")
    assert latest.version == "1.10.0"
    assert (
        latest.action("run").cls.__module__
        != registry.resolve("coco@1.9.0", "export").action("run").cls.__module__
    )
    _, action = registry.resolve_action("coco@1.9.0", "export", "run")
    run = Run(run_id=uuid.uuid4(), attempt=1, sink=NullSink())
    assert action.cls(action.cls.params_model(), run).start() == {"version": "1.9.0"}


def test_add_directory_marks_builtins(tmp_path: Path) -> None:
    registry = PluginRegistry([plugin("coco@1.0.0")])
    builtin = registry.add_directory(
        write_plugin(tmp_path / "native", "native", "1.0.0"), builtin=True
    )

    assert builtin.builtin is True
    assert registry.resolve(None, "export") is builtin
