"""Errors of the train service, each turned into the run's `run.failed` message."""

from __future__ import annotations

from runmesh.core.errors import RunmeshError


class TrainError(RunmeshError):
    """Base of the train service's errors."""


class DatasetError(TrainError):
    """The dataset cannot be found, read or used (the message says which and why)."""


class ModelNotFoundError(TrainError):
    """A model id that the tenant does not have, or whose weights cannot be read."""


class TrainConfigError(TrainError):
    """Params that are valid alone but not together (a base model with other classes, a
    model name taken by another run)."""
