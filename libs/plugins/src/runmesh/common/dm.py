"""Deprecated path of `runmesh.dm`, kept for plugins published against runmesh 0.1."""

from runmesh.common import warn_moved
from runmesh.dm import *  # noqa: F403
from runmesh.dm import __all__ as __all__

warn_moved("runmesh.common.dm", "runmesh.dm")
