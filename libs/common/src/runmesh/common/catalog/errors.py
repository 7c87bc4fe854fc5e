"""Errors of the data catalog's data access."""

from __future__ import annotations

from runmesh.common.errors import RunmeshError


class CatalogError(RunmeshError):
    """Base of catalog errors."""


class DuplicateNameError(CatalogError):
    """The tenant already has a storage or data collection of that name."""


class CatalogNotFoundError(CatalogError):
    """A storage, data collection or data unit does not exist for this tenant."""


class DataUnitConflictError(CatalogError):
    """A batch of data units cannot be stored as given: a unit key repeated in the batch,
    or a (run, unit key) pair already stored for another collection or tenant."""
