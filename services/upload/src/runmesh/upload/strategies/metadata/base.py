"""The metadata strategy interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from runmesh.storage import Storage


class MetadataSource(ABC):
    """Loads `{file stem: meta}` for the units of an upload."""

    name: str = ""

    @abstractmethod
    async def load(self, storage: Storage) -> dict[str, dict[str, Any]]:
        """Meta by file stem."""
