"""Import paths of runmesh 0.1 (`runmesh.common.plugins`, `.dm`, `.converters`), kept so that
plugin versions published against them still import. New code imports `runmesh.plugins`,
`runmesh.dm` and `runmesh.converters`; nothing else lives here.
"""

from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """A DeprecationWarning naming the new import path, attributed to the importing module."""
    warnings.warn(
        f"{old} moved to {new}; import it from there ({old} will be removed)",
        DeprecationWarning,
        stacklevel=3,
    )
