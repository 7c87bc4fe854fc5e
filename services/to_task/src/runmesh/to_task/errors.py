"""Errors of the to_task pipeline; each names the id, spec or field at fault."""

from __future__ import annotations

from typing import ClassVar

from runmesh.core.errors import RunmeshError


class ToTaskError(RunmeshError):
    """Base of to_task errors: the run fails with this message."""

    retriable: ClassVar[bool] = False


class ToTaskConfigError(ToTaskError):
    """The params name something that does not exist or does not fit (project, spec, units)."""


class NoDataUnitsError(ToTaskError):
    """The filters matched no data unit of the project's collection."""
