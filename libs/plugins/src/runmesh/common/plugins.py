"""Deprecated path of `runmesh.plugins`, kept for plugins published against runmesh 0.1."""

from runmesh.common import warn_moved
from runmesh.plugins import *  # noqa: F403
from runmesh.plugins import __all__ as __all__

warn_moved("runmesh.common.plugins", "runmesh.plugins")
