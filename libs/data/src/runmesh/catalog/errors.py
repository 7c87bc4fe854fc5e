"""Errors of the data catalog's data access."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from runmesh.core.errors import RunmeshError


class CatalogError(RunmeshError):
    """Base of catalog errors."""


class DuplicateNameError(CatalogError):
    """The tenant already has a storage or data collection of that name."""


class CatalogNotFoundError(CatalogError):
    """A storage, data collection or data unit does not exist for this tenant."""


class DataUnitConflictError(CatalogError):
    """A batch of data units cannot be stored as given: a unit key repeated in the batch,
    or a (run, unit key) pair already stored for another collection or tenant."""


class InvalidReferenceError(CatalogError):
    """What is to be stored names rows the tenant does not have: a data collection, a project,
    or data units (of the project's collection). `field` names the input at fault and `ids`
    the missing values."""

    def __init__(self, message: str, *, field: str, ids: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.ids = tuple(ids)


ClassProblem: TypeAlias = tuple[tuple[str | int, ...], str]
"""Where in a DM document an unknown class name is (`("images", 0, "annotations", 2,
"class_name")`), and the name."""


class UnknownClassError(CatalogError):
    """Annotations name classes that the project's label schema does not have; `problems`
    lists each place and name (at most 100)."""

    def __init__(self, message: str, problems: Sequence[ClassProblem]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class RunRoleError(CatalogError):
    """A run's own database role (runmesh.catalog.run_roles) could not be created or
    dropped: the platform's database user lacks a privilege it needs (the message names the
    grant), or the role still owns objects elsewhere in the cluster. Trying again does not
    help until an operator acts."""
