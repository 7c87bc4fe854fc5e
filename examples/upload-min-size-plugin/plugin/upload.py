"""An uploader that refuses units whose image is too small (the BaseUploader hooks at work)."""

from __future__ import annotations

from pydantic import Field

from runmesh.storage import ObjectInfo
from runmesh.upload.context import PlannedUnit, SourceFile
from runmesh.upload.params import UploadParams
from runmesh.upload.uploader import BaseUploader


class MinSizeParams(UploadParams):
    """The built-in params plus one of this plugin's own."""

    min_image_bytes: int = Field(default=1024, ge=0, description="Smallest image accepted")


class MinSizeUpload(BaseUploader):
    """The built-in upload, with two hooks overridden."""

    params_model = MinSizeParams

    def validate_files(self, unit: PlannedUnit) -> str | None:
        """Refuse a unit whose `image` file is below `min_image_bytes`."""
        params: MinSizeParams = self.params  # type: ignore[assignment]
        image = unit.files.get("image")
        limit = params.min_image_bytes
        if image is not None and image.size < limit:
            return f"{image.path}: {image.size} bytes, under min_image_bytes={limit}"
        return None

    def after_upload(self, file: SourceFile, stored: ObjectInfo) -> None:
        """One log line per file, with its checksum."""
        self.run.log_message(f"stored {file.path} ({stored.checksum})", level="debug")
