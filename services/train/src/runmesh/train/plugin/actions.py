"""The built-in neural_net actions, as the train service ships them."""

from __future__ import annotations

from runmesh.train.evaluate_action import BaseTest
from runmesh.train.import_action import BaseImportModel
from runmesh.train.inference_action import BaseInference
from runmesh.train.train_action import BaseTrain
from runmesh.train.trial_action import BaseTuneTrial
from runmesh.train.tune_action import BaseTune


class Train(BaseTrain):
    """Train the built-in detector (see `runmesh.train.train_action.BaseTrain`)."""


class Inference(BaseInference):
    """Predict with a registered model (see `runmesh.train.inference_action.BaseInference`)."""


class Test(BaseTest):
    """Evaluate a registered model (see `runmesh.train.evaluate_action.BaseTest`)."""


class Tune(BaseTune):
    """Search hyperparameters (see `runmesh.train.tune_action.BaseTune`)."""


class TuneTrial(BaseTuneTrial):
    """One trial of a tune run (see `runmesh.train.trial_action.BaseTuneTrial`)."""


class ImportModel(BaseImportModel):
    """Register an ONNX detector (see `runmesh.train.import_action.BaseImportModel`)."""
