"""Errors the CLI reports to its user as one line (and a non-zero exit), never a traceback."""

from __future__ import annotations

from runmesh.core.errors import RunmeshError


class CliError(RunmeshError):
    """Something the user can fix: a missing setting, an unreachable gateway, a 4xx answer."""
