"""The plugin model: config.yaml, action classes, the `run` object, loading and registry."""

from runmesh.plugins.action import Action, ActionResult, NoParams
from runmesh.plugins.config import ActionConfig, PluginConfig, load_config, parse_config
from runmesh.plugins.loader import LoadedAction, LoadedPlugin, load_plugin
from runmesh.plugins.registry import PluginRegistry
from runmesh.plugins.run import Run, RunContext, RunSink

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
