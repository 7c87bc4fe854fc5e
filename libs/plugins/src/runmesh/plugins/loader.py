"""Load a plugin directory: validate config.yaml and import each action's entrypoint."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from runmesh.core.errors import PluginError
from runmesh.core.events import ActionManifest, PluginManifest
from runmesh.plugins.action import Action
from runmesh.plugins.config import ActionConfig, PluginConfig, load_config

_import_lock = threading.Lock()


@dataclass(slots=True, frozen=True)
class LoadedAction:
    """An action class with its config entry."""

    name: str
    cls: type[Action]
    config: ActionConfig

    @property
    def method(self) -> str:
        """`task`, `job` or `restapi`."""
        return self.config.method

    def manifest(self) -> ActionManifest:
        """What the gateway needs to know about this action."""
        return ActionManifest(
            method=self.config.method,
            description=self.config.description or (inspect.getdoc(self.cls) or ""),
            params_schema=self.cls.params_model.model_json_schema(),
            progress_categories=Action.describe_categories(self.cls.progress_categories),
            metrics_categories=Action.describe_categories(self.cls.metrics_categories),
            timeout_s=self.config.timeout_s,
            max_attempts=self.config.max_attempts,
            retry_backoff_s=self.config.retry_backoff_s,
            placement=self.config.placement,
            resources=self.config.resources,
            inputs=self.config.inputs,
            outputs=self.config.outputs,
        )


@dataclass(slots=True, frozen=True)
class LoadedPlugin:
    """A plugin version ready to run: its config, directory and imported action classes."""

    config: PluginConfig
    directory: Path
    actions: dict[str, LoadedAction] = field(default_factory=dict)
    builtin: bool = False

    @property
    def code(self) -> str:
        """The plugin's code (its stable identifier)."""
        return self.config.code

    @property
    def version(self) -> str:
        """The plugin's version string."""
        return self.config.version

    @property
    def ref(self) -> str:
        """`code@version`."""
        return f"{self.config.code}@{self.config.version}"

    def action(self, name: str) -> LoadedAction:
        """The named action, or `PluginError` naming the ones this plugin has."""
        try:
            return self.actions[name]
        except KeyError:
            known = ", ".join(sorted(self.actions))
            raise PluginError(
                f"plugin {self.ref} has no action {name!r}; its actions: {known}"
            ) from None

    def manifest(self, *, service: str, worker: str) -> PluginManifest:
        """The manifest a worker publishes on `runmesh.plugins`."""
        return PluginManifest(
            code=self.config.code,
            name=self.config.name,
            version=self.config.version,
            category=self.config.category,
            description=self.config.description,
            builtin=self.builtin,
            data_types=self.config.data_types,
            annotation_types=self.config.annotation_types,
            package_manager=self.config.package_manager,
            actions={name: action.manifest() for name, action in self.actions.items()},
            service=service,
            worker=worker,
        )


def load_plugin(directory: Path, *, builtin: bool = False) -> LoadedPlugin:
    """Load the plugin in `directory`; `PluginError` says which file, field or import failed."""
    directory = directory.resolve()
    config = load_config(directory)
    package = _plugin_package(directory, config)
    actions: dict[str, LoadedAction] = {}
    for name, action_config in config.actions.items():
        cls = _import_action(package, directory, name, action_config.entrypoint)
        try:
            cls.params_model.model_json_schema()
        except Exception as exc:  # any schema-generation failure is the plugin's error
            raise PluginError(
                f"{directory}/config.yaml: action {name!r}: params model "
                f"{cls.params_model.__name__} has no JSON schema: {exc}"
            ) from exc
        actions[name] = LoadedAction(name=name, cls=cls, config=action_config)
    return LoadedPlugin(config=config, directory=directory, actions=actions, builtin=builtin)


def _plugin_package(directory: Path, config: PluginConfig) -> str:
    """Register a synthetic package rooted at `directory` so plugins never clash by module name.

    Two plugins (or two versions of one) may both ship `plugin/train.py`; importing each under
    its own package keeps them apart in one process. Plugin modules import each other
    relatively (`from .utils import x`).
    """
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
    safe = re.sub(r"\W", "_", f"{config.code}_{config.version}")
    name = f"runmesh_plugins.{safe}_{digest}"
    with _import_lock:
        if "runmesh_plugins" not in sys.modules:
            root = ModuleType("runmesh_plugins")
            root.__path__ = []
            sys.modules["runmesh_plugins"] = root
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(directory)]
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
    return name


def _import_action(package: str, directory: Path, action: str, entrypoint: str) -> type[Action]:
    module_path, _, attr = entrypoint.replace(":", ".").rpartition(".")
    where = f"{directory}/config.yaml: actions.{action}.entrypoint {entrypoint!r}"
    try:
        module = importlib.import_module(f"{package}.{module_path}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("runmesh."):
            # The upload, export, to_task and train templates build on the services' base
            # classes, which a CLI-only install leaves out.
            raise PluginError(
                f"{where}: it imports {exc.name}, which comes with the platform, not with the "
                "CLI alone: install the CLI with its dev extra (pip install 'runmesh-cli[dev]')"
            ) from exc
        raise PluginError(f"{where}: module {module_path!r} not found ({exc})") from exc
    except Exception as exc:  # an import-time error in plugin code is a plugin error
        raise PluginError(f"{where}: importing {module_path!r} failed: {exc!r}") from exc
    cls: Any = getattr(module, attr, None)
    if cls is None:
        raise PluginError(f"{where}: {module_path!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise PluginError(f"{where}: {attr} is not a subclass of runmesh.plugins.Action")
    if inspect.isabstract(cls):
        raise PluginError(f"{where}: {attr} does not implement start()")
    return cls
