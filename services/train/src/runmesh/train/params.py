"""Params of the neural_net actions: train, inference and test (the Synapse contract)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runmesh.train.model.onnx_layouts import OnnxLayout

DatasetFormat: TypeAlias = Literal["auto", "dm", "coco", "yolo", "pascal_voc"]
_Uri = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^(s3|file)://")]


class DatasetRef(BaseModel):
    """What to learn from: exactly one of a ground-truth version, an export run's output, or
    a dataset folder in storage."""

    model_config = ConfigDict(extra="forbid")

    ground_truth_version: uuid.UUID | None = Field(
        default=None, description="A ground-truth dataset version (items split by category)"
    )
    export_run: uuid.UUID | None = Field(
        default=None, description="A succeeded export run: the folder it wrote"
    )
    uri: _Uri | None = Field(
        default=None, description="A dataset folder: s3://bucket/prefix or file:///path"
    )
    format: DatasetFormat = Field(
        default="auto", description="Layout of an export or folder dataset (auto: by its files)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        given = [self.ground_truth_version, self.export_run, self.uri]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of ground_truth_version, export_run or uri")
        return self

    def describe(self) -> dict[str, str]:
        """The reference as stored with the model."""
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}


class Hyperparameters(BaseModel):
    """How the built-in model learns; every value is checked before training starts."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=20, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=4096)
    learning_rate: float = Field(default=0.01, gt=0, le=1.0)
    hidden_units: int = Field(default=64, ge=2, le=2048)
    weight_decay: float = Field(default=1e-4, ge=0, le=1.0)
    negatives_per_image: int = Field(
        default=4, ge=0, le=64, description="Background windows sampled per image"
    )


class TrainParams(BaseModel):
    """Train the built-in detector on a dataset and register the model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="The model's name (unique)"
    )
    description: str = Field(default="", max_length=2000)
    dataset: DatasetRef
    model: uuid.UUID | None = Field(
        default=None, description="A registered model to start from (same classes)"
    )
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    validation_split: float = Field(
        default=0.2,
        ge=0.0,
        le=0.9,
        description="Share of images held out for validation (items of a ground-truth version "
        "keep their own train/validation category)",
    )
    checkpoint_interval: int = Field(
        default=1, ge=1, le=1000, description="Epochs between checkpoints"
    )
    resume: bool = Field(
        default=True,
        description="An attempt after a crash continues from this run's last checkpoint",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Same seed, same model")


class InferenceParams(BaseModel):
    """Detect objects with a registered model in many images; predictions go to storage."""

    model_config = ConfigDict(extra="forbid")

    model: uuid.UUID = Field(description="A registered model")
    images_uri: _Uri = Field(
        description='A JSON-lines file of {"key": ..., "uri": ...}: the images to predict on'
    )
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=10_000, description="Per image")
    max_concurrency: int = Field(default=8, ge=1, le=64, description="Images read at once")
    batch_size: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Images per model call, for an imported ONNX model that takes batches",
    )


class ImportModelParams(BaseModel):
    """Register a detector trained elsewhere, as an ONNX file in a storage the tenant owns."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="The model's name (unique)"
    )
    description: str = Field(default="", max_length=2000)
    uri: _Uri = Field(description="The .onnx file, in a storage of the tenant's")
    layout: OnnxLayout = Field(
        description="How its outputs are laid out (docs/train.md#import_model)"
    )
    classes: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=10_000, description="Its class names, in output order"
    )

    @model_validator(mode="after")
    def _distinct(self) -> ImportModelParams:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be distinct")
        return self


class EvaluateParams(BaseModel):
    """Evaluate a registered model's detections on a dataset's boxes: mAP, per-class AP,
    precision and recall at a threshold."""

    model_config = ConfigDict(extra="forbid")

    model: uuid.UUID = Field(description="A registered model")
    dataset: DatasetRef
    confidence_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="The score a detection needs to count in precision and recall (mAP ranks "
        "every detection, whatever its score)",
    )


TunedName = Literal[
    "epochs", "batch_size", "learning_rate", "hidden_units", "weight_decay", "negatives_per_image"
]
_INTEGER_PARAMS = {"epochs", "batch_size", "hidden_units", "negatives_per_image"}


class SearchRange(BaseModel):
    """A range to sample from: uniform, or log-uniform with `log` (then `low` > 0)."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SearchChoice(BaseModel):
    """Values to choose from."""

    model_config = ConfigDict(extra="forbid")

    choices: list[float] = Field(min_length=1, max_length=100)


class TuneParams(BaseModel):
    """Search hyperparameters with Optuna; register the best trial's model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="The best model's name (unique)"
    )
    description: str = Field(default="", max_length=2000)
    dataset: DatasetRef
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Values of what is not searched"
    )
    search_space: dict[TunedName, SearchRange | SearchChoice] = Field(
        min_length=1, description="Per hyperparameter: a range {low, high, log} or {choices}"
    )
    n_trials: int = Field(default=10, ge=1, le=1000)
    max_concurrent_trials: int = Field(
        default=2, ge=1, le=64, description="Trial runs at once (spread over the replicas)"
    )
    direction: Literal["maximize", "minimize"] = "maximize"
    metric: Literal["validation_accuracy", "validation_loss"] = "validation_accuracy"
    pruning: bool = Field(default=True, description="Stop trials below the median early")
    validation_split: float = Field(default=0.2, gt=0.0, le=0.9)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    trial_timeout_s: float = Field(default=3600, gt=0, le=86_400)

    @model_validator(mode="after")
    def _valid_space(self) -> TuneParams:
        # Every sampled value must pass Hyperparameters' own checks: try the bounds now.
        for name, space in self.search_space.items():
            values = space.choices if isinstance(space, SearchChoice) else [space.low, space.high]
            for value in values:
                cast = int(value) if name in _INTEGER_PARAMS else value
                if name in _INTEGER_PARAMS and cast != value:
                    raise ValueError(f"search_space.{name}: {value} is not a whole number")
                try:
                    Hyperparameters.model_validate(self.hyperparameters.model_dump() | {name: cast})
                except ValueError as exc:
                    raise ValueError(f"search_space.{name}: {value} is out of range") from exc
        return self


class TrialParams(BaseModel):
    """One trial of a tune run's study (submitted by the tune run, not by people)."""

    model_config = ConfigDict(extra="forbid")

    study: str = Field(min_length=1, max_length=200)
    tune_run: uuid.UUID
    dataset: DatasetRef
    hyperparameters: Hyperparameters
    search_space: dict[TunedName, SearchRange | SearchChoice] = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    metric: Literal["validation_accuracy", "validation_loss"]
    pruning: bool
    validation_split: float = Field(gt=0.0, le=0.9)
    seed: int = Field(ge=0, le=2**32 - 1)
