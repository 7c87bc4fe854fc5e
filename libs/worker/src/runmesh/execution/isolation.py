"""Where an action runs: inside the worker only when the operator trusts its code."""

from __future__ import annotations

from collections.abc import Collection

from runmesh.plugins.loader import LoadedAction, LoadedPlugin


def run_method(plugin: LoadedPlugin, action: LoadedAction, trusted: Collection[str]) -> str:
    """The method `action` of `plugin` runs with: its declared one for the built-in plugins and
    the plugins the operator trusts (`RUNMESH_IN_PROCESS_PLUGINS`), else `job`.

    A `task` shares the worker's process with every other run: an `os._exit`, a crash in a C
    extension, a leak or a loop that never yields would cost its neighbours too. A job costs
    about 50 ms more to start and can always be killed, so code the platform does not vouch
    for runs as one whatever its `config.yaml` says (published versions always do).
    """
    if action.method != "task" or plugin.builtin or plugin.code in trusted:
        return action.method
    return "job"
