"""Errors of the upload pipeline; each names the file, field or id at fault."""

from __future__ import annotations

from typing import ClassVar

from runmesh.core.errors import RunmeshError


class UploadError(RunmeshError):
    """Base of upload errors: the run fails with this message."""

    retriable: ClassVar[bool] = False


class UploadConfigError(UploadError):
    """The params name something that does not exist or does not fit (storage, collection)."""


class MetadataError(UploadError):
    """The Excel metadata workbook is missing, too large or malformed."""


class MetadataTooLargeError(MetadataError):
    """The workbook is over a size limit, as stored or as its zip headers say it unpacks."""


class NothingToUploadError(UploadError):
    """No valid data unit was found: the run has nothing to upload."""


class UploadFailedError(UploadError):
    """Every file failed to upload."""

    retriable = True
