"""The training loop of the built-in detector: deterministic for a seed, resumable per epoch.

Everything random is drawn from generators seeded by (seed, purpose) or (seed, epoch), so an
attempt that resumes at epoch k from a checkpoint runs epochs k+1.. exactly as an
uninterrupted run would, and ends with the same weights. CPU work: run it in a thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runmesh.train.dataset import Sample
from runmesh.train.model import FEATURE_SIZE, MLP, Detector, training_samples, window_sizes_from
from runmesh.train.model.evaluation import ClassificationReport, classification_report
from runmesh.train.params import Hyperparameters

_SPLIT_PURPOSE = 1
_TRAIN_ROWS_PURPOSE = 2
_VALIDATION_ROWS_PURPOSE = 3


@dataclass(slots=True, frozen=True)
class EpochReport:
    """What one epoch did (validation values are None without validation images)."""

    epoch: int
    loss: float
    accuracy: float
    validation_loss: float | None
    validation_accuracy: float | None


@dataclass(slots=True)
class Prepared:
    """Feature rows of the training and validation images, and the validation images."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_validation: npt.NDArray[np.float32]
    y_validation: npt.NDArray[np.int64]
    validation: list[Sample]
    window_sizes: list[tuple[int, int]]


def split_samples(
    samples: Sequence[Sample], validation_split: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): a sample's own split when the dataset gives one, else a hash of
    its key and the seed (stable: the same images land on the same side in every attempt).
    Test images are in neither."""
    train: list[Sample] = []
    validation: list[Sample] = []
    for sample in samples:
        if sample.split == "test":
            continue
        if sample.split is not None:
            (validation if sample.split == "validation" else train).append(sample)
            continue
        digest = hashlib.sha256(f"{seed}:{sample.key}".encode()).digest()
        share = int.from_bytes(digest[:8], "big") / 2**64
        (validation if share < validation_split else train).append(sample)
    return train, validation


def prepare(
    samples: Sequence[Sample],
    classes: list[str],
    hyperparameters: Hyperparameters,
    *,
    validation_split: float,
    seed: int,
) -> Prepared:
    """Split the images and turn them into feature rows (background windows included)."""
    train, validation = split_samples(samples, validation_split, seed)
    if not train:
        raise ValueError("no training image: every image is in the validation or test split")
    x_train, y_train = training_samples(
        ((s.image, s.boxes) for s in train),
        classes,
        rng=np.random.default_rng([seed, _TRAIN_ROWS_PURPOSE]),
        negatives_per_image=hyperparameters.negatives_per_image,
    )
    x_validation, y_validation = training_samples(
        ((s.image, s.boxes) for s in validation),
        classes,
        rng=np.random.default_rng([seed, _VALIDATION_ROWS_PURPOSE]),
        negatives_per_image=hyperparameters.negatives_per_image,
    )
    boxes = [box for s in train for name, box in s.boxes if name in classes]
    if not boxes:
        raise ValueError(f"no training box of the classes {classes}")
    return Prepared(
        x_train, y_train, x_validation, y_validation, validation, window_sizes_from(boxes)
    )


def new_detector(
    prepared: Prepared, classes: list[str], hyperparameters: Hyperparameters, seed: int
) -> Detector:
    """A fresh network over the training rows' statistics."""
    network = MLP.create(FEATURE_SIZE, hyperparameters.hidden_units, len(classes) + 1, seed)
    network.fit_standardizer(prepared.x_train)
    return Detector(classes=list(classes), network=network, window_sizes=prepared.window_sizes)


def train_epochs(
    detector: Detector,
    prepared: Prepared,
    hyperparameters: Hyperparameters,
    *,
    seed: int,
    first_epoch: int,
    on_epoch: Callable[[EpochReport, Detector], None],
) -> None:
    """Epochs `first_epoch`..`epochs`, each with its own generator; `on_epoch` reports,
    checkpoints, and raises to stop (cancellation)."""
    network = detector.network
    for epoch in range(first_epoch, hyperparameters.epochs + 1):
        loss = network.train_epoch(
            prepared.x_train,
            prepared.y_train,
            learning_rate=hyperparameters.learning_rate,
            batch_size=hyperparameters.batch_size,
            rng=np.random.default_rng([seed, epoch]),
            weight_decay=hyperparameters.weight_decay,
        )
        accuracy = _accuracy(network, prepared.x_train, prepared.y_train)
        validation_loss = validation_accuracy = None
        if len(prepared.y_validation):
            validation_loss = _loss(network, prepared.x_validation, prepared.y_validation)
            validation_accuracy = _accuracy(network, prepared.x_validation, prepared.y_validation)
        on_epoch(EpochReport(epoch, loss, accuracy, validation_loss, validation_accuracy), detector)


def evaluate_boxes(detector: Detector, samples: Sequence[Sample]) -> ClassificationReport:
    """How well the detector names the classes of the samples' boxes (its classes only)."""
    truth: list[str] = []
    predicted: list[str] = []
    for sample in samples:
        boxes = [(name, box) for name, box in sample.boxes if name in detector.classes]
        if not boxes:
            continue
        named = detector.classify(sample.image, [box for _, box in boxes])
        truth += [name for name, _ in boxes]
        predicted += [name for name, _ in named]
    return classification_report(truth, predicted, detector.classes)


def _accuracy(network: MLP, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> float:
    return float(np.mean(network.predict(x) == y))


def _loss(network: MLP, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> float:
    probabilities = network.predict_proba(x)
    picked = probabilities[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
