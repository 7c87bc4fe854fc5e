"""Recursive discovery: the files in the folder and every subfolder."""

from __future__ import annotations

from runmesh.storage import ObjectInfo, Storage
from runmesh.upload.strategies.file_discovery.base import FileDiscovery


class RecursiveDiscovery(FileDiscovery):
    """Every file below the folder, at any depth."""

    name = "recursive"

    async def discover(self, storage: Storage, path: str) -> list[ObjectInfo]:
        """The files anywhere under `path`."""
        return [info async for info in storage.list(path, recursive=True)]
