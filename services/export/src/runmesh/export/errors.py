"""Errors of the export pipeline; each names the id, path or field at fault."""

from __future__ import annotations

from typing import ClassVar

from runmesh.core.errors import RunmeshError


class ExportError(RunmeshError):
    """Base of export errors: the run fails with this message."""

    retriable: ClassVar[bool] = False


class ExportConfigError(ExportError):
    """The params name something that does not exist or does not fit (storage, project)."""


class NothingToExportError(ExportError):
    """The filter matched no item."""


class ExportWriteError(ExportError):
    """The destination storage refused the export's files."""

    retriable = True
