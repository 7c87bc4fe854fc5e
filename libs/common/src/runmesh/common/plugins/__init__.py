"""The plugin model: config.yaml, action classes, the `run` object, loading and registry."""

from runmesh.common.plugins.action import Action, ActionResult, NoParams
from runmesh.common.plugins.config import ActionConfig, PluginConfig, load_config, parse_config
from runmesh.common.plugins.loader import LoadedAction, LoadedPlugin, load_plugin
from runmesh.common.plugins.registry import PluginRegistry
from runmesh.common.plugins.run import Run, RunContext, RunSink

__all__ = [
    "Action",
    "ActionConfig",
    "ActionResult",
    "LoadedAction",
    "LoadedPlugin",
    "NoParams",
    "PluginConfig",
    "PluginRegistry",
    "Run",
    "RunContext",
    "RunSink",
    "load_config",
    "load_plugin",
    "parse_config",
]
