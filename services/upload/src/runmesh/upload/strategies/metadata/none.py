"""No metadata: units get an empty meta."""

from __future__ import annotations

from typing import Any

from runmesh.storage import Storage
from runmesh.upload.strategies.metadata.base import MetadataSource


class NoMetadata(MetadataSource):
    """Used when the params name no workbook."""

    name = "none"

    async def load(self, storage: Storage) -> dict[str, dict[str, Any]]:
        """Nothing."""
        return {}
