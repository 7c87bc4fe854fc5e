"""`BaseImportModel`: register a detector a team trained elsewhere, as an ONNX file.

The file is read from a storage the tenant owns (its URI goes through the tenant's storages
only), loaded with onnxruntime and run once on a blank image, so a file that is not a detector
of the declared layout and classes fails here, not in a later to_task run. It is then copied
to the run's folder of the platform bucket (`models/<tenant>/<run_id>/model.onnx`) and
registered: from then on `inference`, `test` and to_task's `inference` method use it as they
use a trained model.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np

from runmesh.catalog.trained_models import NewModel
from runmesh.plugins import Action
from runmesh.train.artifacts import read_model_file
from runmesh.train.errors import TrainConfigError
from runmesh.train.model.onnx_detector import OnnxDetector, OnnxModelError
from runmesh.train.params import ImportModelParams
from runmesh.train.registration import register
from runmesh.train.resources import run_resources

_PROBE = np.zeros((64, 64, 3), dtype=np.uint8)


class BaseImportModel(Action[ImportModelParams]):
    """Checks and registers an ONNX detector from the tenant's storage."""

    name = "import_model"
    params_model = ImportModelParams
    progress_categories: ClassVar = {
        "import": {"description": "Reading, checking and storing the model", "proportion": 100}
    }

    async def start(self) -> dict[str, object]:
        """Import; the result names the registered model."""
        params = self.params
        run = self.run
        async with run_resources(run, "import_model") as res:
            run.set_progress(0, 3, category="import")
            data = await read_model_file(params.uri, res.uris, what="the model file")
            run.set_progress(1, 3, category="import")
            run.check_cancelled()
            try:
                await asyncio.to_thread(_check, data, params)
            except OnnxModelError as exc:
                raise TrainConfigError(f"uri: {params.uri} ({params.layout}): {exc}") from exc
            run.set_progress(2, 3, category="import")
            stored = await res.artifacts.save_model(data, "model.onnx")
            model = await register(
                res.pool,
                res.tenant,
                NewModel(
                    name=params.name,
                    description=params.description,
                    plugin=run.context.plugin,
                    plugin_version=run.context.plugin_version,
                    action=self.name,
                    run_id=run.run_id,
                    dataset={},
                    classes=params.classes,
                    params={"format": "onnx", "layout": params.layout, "source": params.uri},
                    metrics={},
                    artifact_uri=stored.uri,
                ),
            )
            run.set_progress(3, 3, category="import")
            run.log_artifact(
                "model",
                stored.uri,
                size=stored.size,
                checksum=stored.checksum,
                media_type="application/onnx",
            )
            return {
                "model_id": str(model.id),
                "artifact_uri": stored.uri,
                "classes": params.classes,
                "layout": params.layout,
            }


def _check(data: bytes, params: ImportModelParams) -> None:
    """Load the file and run it once: its outputs must fit the layout and the classes."""
    OnnxDetector(data, params.layout, params.classes, batch_size=1).detect(_PROBE, threshold=1.0)
