"""Where a train run keeps its checkpoints and model in the platform bucket, and how a
registered model's weights are loaded back.

Layout: `s3://<bucket>/models/<tenant>/<run_id>/checkpoints/epoch-000007.npz` and
`.../model.npz` for train runs, `s3://<bucket>/runs/<tenant>/<run_id>/...` for the files of
other runs (predictions, test reports). Checkpoints are named by epoch, zero-padded, so the
last one is the greatest name; each is written whole before it is listed (S3 puts are
atomic), so a crash mid-write leaves the previous checkpoint as the last.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import cast

from runmesh.catalog.trained_models import ModelRow
from runmesh.core.settings import Settings
from runmesh.storage import Storage, StorageError, TenantUris, platform_storage
from runmesh.train.errors import ModelNotFoundError
from runmesh.train.model import Detector
from runmesh.train.model.onnx_detector import AnyDetector, OnnxDetector, OnnxModelError
from runmesh.train.model.onnx_layouts import OnnxLayout

MAX_MODEL_BYTES = 1024 * 1024 * 1024
_CHECKPOINT = re.compile(r"epoch-(\d{6})\.npz$")
_TIMEOUT_S = 300


@dataclass(slots=True, frozen=True)
class StoredFile:
    """A file written to the platform bucket."""

    uri: str
    size: int
    checksum: str | None


class RunArtifacts:
    """The run's folder in the platform bucket."""

    def __init__(
        self, settings: Settings, tenant: str, run_id: uuid.UUID, *, kind: str = "models"
    ) -> None:
        self.storage: Storage = platform_storage(settings.s3)
        self.prefix = f"{kind}/{tenant}/{run_id}"

    async def close(self) -> None:
        """Release the storage client."""
        await self.storage.close()

    async def save_checkpoint(self, epoch: int, data: bytes) -> StoredFile:
        """Store the state after `epoch`."""
        return await self._write(f"{self.prefix}/checkpoints/epoch-{epoch:06d}.npz", data)

    async def save_model(self, data: bytes, name: str = "model.npz") -> StoredFile:
        """Store the final model."""
        return await self._write(f"{self.prefix}/{name}", data)

    async def save_file(self, name: str, data: bytes) -> StoredFile:
        """Store another file of the run (a confusion matrix, predictions)."""
        return await self._write(f"{self.prefix}/{name}", data)

    async def last_checkpoint(self) -> tuple[int, bytes] | None:
        """(epoch, bytes) of the newest checkpoint of this run, or None."""
        newest: tuple[int, str] | None = None
        async with asyncio.timeout(_TIMEOUT_S):
            async for info in self.storage.list(f"{self.prefix}/checkpoints"):
                match = _CHECKPOINT.search(info.path)
                if match is not None and (newest is None or int(match[1]) > newest[0]):
                    newest = (int(match[1]), info.path)
            if newest is None:
                return None
            data = await self.storage.read_bytes(newest[1], max_bytes=MAX_MODEL_BYTES)
        return newest[0], data

    async def _write(self, path: str, data: bytes) -> StoredFile:
        async with asyncio.timeout(_TIMEOUT_S):
            info = await self.storage.write_bytes(path, data)
        return StoredFile(self.storage.url(path), info.size, info.checksum)


async def read_model_file(
    uri: str, uris: TenantUris, *, what: str = "the model's weights"
) -> bytes:
    """The bytes of a model file at `uri`, read through the run's tenant's storages and
    folders only."""
    try:
        storage, path = uris.open(uri)
        async with asyncio.timeout(_TIMEOUT_S):
            return await storage.read_bytes(path, max_bytes=MAX_MODEL_BYTES)
    except (StorageError, OSError, TimeoutError) as exc:
        raise ModelNotFoundError(f"cannot read {what} at {uri}: {exc}") from exc


async def load_detector(uri: str, uris: TenantUris) -> Detector:
    """The built-in detector whose weights are at `uri` (a registered model's
    `artifact_uri`)."""
    data = await read_model_file(uri, uris)
    try:
        return await asyncio.to_thread(Detector.from_bytes, data)
    except ValueError as exc:
        raise ModelNotFoundError(f"{uri} is not a model of the built-in trainer: {exc}") from exc


async def load_model(model: ModelRow, uris: TenantUris, *, batch_size: int = 8) -> AnyDetector:
    """The detector of a registered model: an imported ONNX file (`params.format` `onnx`,
    read by its `params.layout`) or the built-in trainer's weights."""
    if model.params.get("format") != "onnx":
        return await load_detector(model.artifact_uri, uris)
    data = await read_model_file(model.artifact_uri, uris)
    layout = cast("OnnxLayout", model.params.get("layout"))
    try:
        return await asyncio.to_thread(
            OnnxDetector, data, layout, model.classes, batch_size=batch_size
        )
    except OnnxModelError as exc:
        raise ModelNotFoundError(f"model {model.id}: {exc}") from exc
