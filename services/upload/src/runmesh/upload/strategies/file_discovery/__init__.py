"""How files are found under a path: `flat` (that folder only) or `recursive`."""

from __future__ import annotations

from runmesh.upload.strategies.file_discovery.base import FileDiscovery
from runmesh.upload.strategies.file_discovery.flat import FlatDiscovery
from runmesh.upload.strategies.file_discovery.recursive import RecursiveDiscovery


def discovery_for(is_recursive: bool) -> FileDiscovery:
    """The strategy the params ask for."""
    return RecursiveDiscovery() if is_recursive else FlatDiscovery()


__all__ = ["FileDiscovery", "FlatDiscovery", "RecursiveDiscovery", "discovery_for"]
