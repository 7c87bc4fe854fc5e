"""The file discovery strategy interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from runmesh.storage import ObjectInfo, Storage


class FileDiscovery(ABC):
    """Lists the files under a folder of a storage."""

    name: str = ""

    @abstractmethod
    async def discover(self, storage: Storage, path: str) -> list[ObjectInfo]:
        """The files under `path`, sorted by path."""
