"""The built-in upload action: `BaseUploader` as it is."""

from __future__ import annotations

from runmesh.upload.uploader import BaseUploader


class Upload(BaseUploader):
    """Upload files and create data units (see `runmesh.upload.uploader.BaseUploader`)."""
