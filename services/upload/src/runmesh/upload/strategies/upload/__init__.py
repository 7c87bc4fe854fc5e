"""How files are copied to the destination: `concurrent` (bounded parallel streams)."""

from __future__ import annotations

from runmesh.upload.strategies.upload.concurrent import ConcurrentUpload, FileJob

__all__ = ["ConcurrentUpload", "FileJob"]
