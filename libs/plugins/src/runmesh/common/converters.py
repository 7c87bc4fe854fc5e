"""Deprecated path of `runmesh.converters`, kept for plugins published against runmesh 0.1."""

from runmesh.common import warn_moved
from runmesh.converters import *  # noqa: F403
from runmesh.converters import __all__ as __all__

warn_moved("runmesh.common.converters", "runmesh.converters")
