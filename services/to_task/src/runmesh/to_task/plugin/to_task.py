"""The built-in to_task action: `BaseToTask` as it is."""

from __future__ import annotations

from runmesh.to_task.action import BaseToTask


class ToTask(BaseToTask):
    """Create tasks with pre-annotations (see `runmesh.to_task.action.BaseToTask`)."""
