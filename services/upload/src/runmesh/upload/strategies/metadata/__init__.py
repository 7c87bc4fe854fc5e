"""Where units' meta comes from: an Excel workbook (`excel`) or nowhere (`none`)."""

from __future__ import annotations

from runmesh.upload.strategies.metadata.base import MetadataSource
from runmesh.upload.strategies.metadata.excel import ExcelLimits, ExcelMetadata
from runmesh.upload.strategies.metadata.none import NoMetadata

__all__ = ["ExcelLimits", "ExcelMetadata", "MetadataSource", "NoMetadata"]
