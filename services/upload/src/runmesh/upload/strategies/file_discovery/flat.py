"""Flat discovery: the files directly in the folder."""

from __future__ import annotations

from runmesh.storage import ObjectInfo, Storage
from runmesh.upload.strategies.file_discovery.base import FileDiscovery


class FlatDiscovery(FileDiscovery):
    """Only the folder's own files; subfolders are not entered."""

    name = "flat"

    async def discover(self, storage: Storage, path: str) -> list[ObjectInfo]:
        """The files directly under `path`."""
        return [info async for info in storage.list(path, recursive=False)]
