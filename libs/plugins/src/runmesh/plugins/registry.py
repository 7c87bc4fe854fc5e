"""The plugins one worker can run, and resolution of a request's `plugin` and `action`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runmesh.core.errors import UnknownPluginError
from runmesh.plugins.config import CONFIG_FILE
from runmesh.plugins.loader import LoadedAction, LoadedPlugin, load_plugin
from runmesh.plugins.versions import version_key


def unknown_action(ref: str, action: str, known: Iterable[str]) -> str:
    """The error of a request naming an action the plugin version `ref` does not have."""
    return f"plugin {ref} has no action {action!r}; known actions: {', '.join(sorted(known))}"


class PluginRegistry:
    """Plugins by code and version; the built-in plugin of each category is the default."""

    def __init__(self, plugins: Iterable[LoadedPlugin] = ()) -> None:
        self._plugins: dict[str, dict[str, LoadedPlugin]] = {}
        self._latest: dict[str, LoadedPlugin] = {}
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: LoadedPlugin) -> None:
        """Register a plugin version (a later one with the same ref replaces it)."""
        versions = self._plugins.setdefault(plugin.code, {})
        versions[plugin.version] = plugin
        self._latest[plugin.code] = versions[max(versions, key=version_key)]

    def add_directory(self, directory: Path, *, builtin: bool = False) -> LoadedPlugin:
        """Load and register the plugin in `directory`."""
        plugin = load_plugin(directory, builtin=builtin)
        self.add(plugin)
        return plugin

    def scan(self, paths: Iterable[Path]) -> list[LoadedPlugin]:
        """Register every plugin found: each path is a plugin or a directory of plugins."""
        found: list[LoadedPlugin] = []
        for path in paths:
            candidates = [path] if (path / CONFIG_FILE).is_file() else sorted(path.iterdir())
            for candidate in candidates:
                if (candidate / CONFIG_FILE).is_file():
                    found.append(self.add_directory(candidate))
        return found

    def plugins(self, category: str | None = None) -> list[LoadedPlugin]:
        """All registered plugin versions, optionally of one category."""
        return [
            plugin
            for versions in self._plugins.values()
            for plugin in versions.values()
            if category is None or plugin.config.category == category
        ]

    def resolve(self, ref: str | None, category: str) -> LoadedPlugin:
        """The plugin a request names (`code`, `code@version` or None for the built-in)."""
        if ref is None:
            builtins = [p for p in self.plugins(category) if p.builtin]
            candidates = builtins or self.plugins(category)
            if len(candidates) != 1:
                raise UnknownPluginError(
                    f"no plugin given and category {category!r} has "
                    f"{'no plugins' if not candidates else 'several'}; known: {self._known()}"
                )
            return candidates[0]
        code, _, version = ref.partition("@")
        versions = self._plugins.get(code)
        if not versions:
            raise UnknownPluginError(f"unknown plugin {code!r}; known: {self._known()}")
        if version:
            plugin = versions.get(version)
            if plugin is None:
                raise UnknownPluginError(
                    f"plugin {code!r} has no version {version!r}; "
                    f"known versions: {', '.join(sorted(versions, key=version_key))}"
                )
        else:
            plugin = self._latest[code]
        if plugin.config.category != category:
            raise UnknownPluginError(
                f"plugin {plugin.ref} is a {plugin.config.category!r} plugin, not {category!r}"
            )
        return plugin

    def resolve_action(
        self, ref: str | None, category: str, action: str
    ) -> tuple[LoadedPlugin, LoadedAction]:
        """The plugin and action a request names, or `UnknownPluginError` naming the known."""
        plugin = self.resolve(ref, category)
        loaded = plugin.actions.get(action)
        if loaded is None:
            raise UnknownPluginError(unknown_action(plugin.ref, action, plugin.actions))
        return plugin, loaded

    def _known(self) -> str:
        refs = sorted(p.ref for p in self.plugins())
        return ", ".join(refs) or "none"
