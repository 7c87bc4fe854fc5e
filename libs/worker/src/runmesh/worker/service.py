"""A category service, declared: `service = Service("upload", (BUILTIN_PLUGIN,))` in its
package. Its category is what its built-in plugin's `config.yaml` says, written nowhere else.
One entry point runs any of them: `python -m runmesh.worker runmesh.upload:service`,
`runmesh worker upload`, or the service's own `python -m runmesh.upload`.

This module imports no worker runtime, so a service package stays light to import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from runmesh.core.errors import ConfigurationError
from runmesh.core.settings import Settings
from runmesh.plugins.config import load_config


@dataclass(slots=True, frozen=True)
class Service:
    """A category service: a worker with built-in plugins, declared in its package.

    Attributes:
        name: The service's name (`upload`): its events' `service`, its metrics, its logs.
        plugins: The directories of its built-in plugins, which all share one category.
    """

    name: str
    plugins: tuple[Path, ...]

    @property
    def category(self) -> str:
        """The category its built-in plugins' `config.yaml` names (the only place it is
        written)."""
        categories = {load_config(directory).category for directory in self.plugins}
        if len(categories) != 1:
            raise ConfigurationError(
                f"service {self.name!r}: its built-in plugins name the categories "
                f"{sorted(categories)}; a service serves exactly one"
            )
        return categories.pop()

    def main(self, settings: Settings | None = None) -> None:
        """Serve the category until SIGTERM or SIGINT (the entry point of its process)."""
        from runmesh.worker.process import main  # the runtime, only when it runs

        main(self.category, service=self.name, builtin_plugins=self.plugins, settings=settings)


def load_service(ref: str) -> Service:
    """The `Service` a reference names: `module:attribute` (`runmesh.upload:service`)."""
    module_name, _, attribute = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"service {ref!r}: cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute or "service", None)
    if not isinstance(found, Service):
        raise ConfigurationError(f"service {ref!r}: {module_name} declares no Service there")
    return found
