"""A one-hidden-layer classifier in numpy: ReLU, softmax cross-entropy, Adam, L2 weight decay.

Everything is float64 and every random draw comes from a generator the caller hands in, so a
training run is a pure function of its seed and data. `state()` / `MLP.from_state()` capture the
whole optimiser (Adam moments and step counter included): training N epochs, saving, restoring
and training M more gives bit-identical weights to N + M epochs in one go, provided each epoch's
shuffling generator is derived the same way (e.g. `np.random.default_rng([seed, epoch])`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
StateValue = npt.NDArray[np.float64] | int | float
"""One entry of `MLP.state()`: an array, or a scalar (step counter, Adam constants)."""

PARAMETERS = ("w1", "b1", "w2", "b2")
"""The trainable arrays, in the order they are updated."""

# Features whose spread is below this are (near) constant: dividing by it would only blow up noise.
_MIN_STD = 1e-8


class MLP:
    """A `n_features -> n_hidden (ReLU) -> n_classes (softmax)` network with its Adam state.

    Inputs are standardised with a mean/std stored in the model (`fit_standardizer`), so the
    same raw features work at training and inference time. Build one with `MLP.create`.
    """

    def __init__(
        self,
        params: dict[str, FloatArray],
        feature_mean: FloatArray,
        feature_std: FloatArray,
        adam_m: dict[str, FloatArray],
        adam_v: dict[str, FloatArray],
        step: int = 0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        """Assemble a network from its arrays; prefer `MLP.create` or `MLP.from_state`."""
        for name in PARAMETERS:
            if name not in params or name not in adam_m or name not in adam_v:
                raise ValueError(f"missing parameter {name!r}")
        n_features, n_hidden = params["w1"].shape
        n_classes = params["w2"].shape[1]
        expected = {
            "w1": (n_features, n_hidden),
            "b1": (n_hidden,),
            "w2": (n_hidden, n_classes),
            "b2": (n_classes,),
        }
        for name, shape in expected.items():
            for source in (params, adam_m, adam_v):
                if source[name].shape != shape:
                    raise ValueError(f"{name} has shape {source[name].shape}, expected {shape}")
        if feature_mean.shape != (n_features,) or feature_std.shape != (n_features,):
            raise ValueError("feature mean/std must have one value per feature")
        if step < 0:
            raise ValueError("step must not be negative")
        # Own float64 copies: a caller's array changing later must not change the model.
        self.params = {k: np.array(params[k], dtype=np.float64) for k in PARAMETERS}
        self.adam_m = {k: np.array(adam_m[k], dtype=np.float64) for k in PARAMETERS}
        self.adam_v = {k: np.array(adam_v[k], dtype=np.float64) for k in PARAMETERS}
        self.feature_mean = np.array(feature_mean, dtype=np.float64)
        self.feature_std = np.array(feature_std, dtype=np.float64)
        self.step = int(step)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)

    @classmethod
    def create(cls, n_features: int, n_hidden: int, n_classes: int, seed: int) -> MLP:
        """A freshly initialised network (He-normal weights, zero biases) from `seed`."""
        if n_features < 1 or n_hidden < 1 or n_classes < 2:
            raise ValueError("need n_features >= 1, n_hidden >= 1 and n_classes >= 2")
        rng = np.random.default_rng(seed)
        # He scaling keeps ReLU activations at a sensible spread regardless of the layer widths.
        params = {
            "w1": rng.normal(0.0, math.sqrt(2.0 / n_features), size=(n_features, n_hidden)),
            "b1": np.zeros(n_hidden, dtype=np.float64),
            "w2": rng.normal(0.0, math.sqrt(2.0 / n_hidden), size=(n_hidden, n_classes)),
            "b2": np.zeros(n_classes, dtype=np.float64),
        }
        zeros = {k: np.zeros_like(v) for k, v in params.items()}
        return cls(
            params,
            feature_mean=np.zeros(n_features, dtype=np.float64),
            feature_std=np.ones(n_features, dtype=np.float64),
            adam_m=zeros,
            adam_v={k: v.copy() for k, v in zeros.items()},
        )

    @property
    def n_features(self) -> int:
        """Input width."""
        return int(self.params["w1"].shape[0])

    @property
    def n_hidden(self) -> int:
        """Hidden layer width."""
        return int(self.params["w1"].shape[1])

    @property
    def n_classes(self) -> int:
        """Output width (number of softmax classes)."""
        return int(self.params["w2"].shape[1])

    def fit_standardizer(self, X: npt.ArrayLike) -> None:
        """Store the per-feature mean and std of `X`; call once, before training."""
        x = self._as_inputs(X)
        if len(x) == 0:
            raise ValueError("cannot fit a standardizer on no rows")
        std = x.std(axis=0)
        self.feature_mean = x.mean(axis=0)
        self.feature_std = np.where(std < _MIN_STD, 1.0, std)

    def train_epoch(
        self,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        learning_rate: float,
        batch_size: int,
        rng: np.random.Generator,
        weight_decay: float = 0.0,
    ) -> float:
        """One pass over `(X, y)` in mini-batches shuffled by `rng`; returns the mean loss.

        The loss is the mean cross-entropy of each batch before its update (the L2 term is
        applied to the gradient of the weight matrices, not reported). `y` holds class indices.
        """
        if learning_rate <= 0 or batch_size < 1 or weight_decay < 0:
            raise ValueError("need learning_rate > 0, batch_size >= 1 and weight_decay >= 0")
        x = self._standardize(X)
        labels = self._as_labels(y, len(x))
        if len(x) == 0:
            raise ValueError("cannot train on no rows")
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            total += self._train_batch(x[batch], labels[batch], learning_rate, weight_decay)
        return total / len(x)

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Class probabilities, `(n, n_classes)` float64, rows summing to 1."""
        _, _, logits = self._forward(self._standardize(X))
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The most probable class index per row."""
        return np.asarray(np.argmax(self.predict_proba(X), axis=1), dtype=np.int64)

    def state(self) -> dict[str, StateValue]:
        """Everything needed to resume training exactly: weights, standardizer, Adam state.

        Arrays are copies; scalars are plain `int` / `float`.
        """
        out: dict[str, StateValue] = {}
        for name in PARAMETERS:
            out[name] = self.params[name].copy()
            out[f"adam_m_{name}"] = self.adam_m[name].copy()
            out[f"adam_v_{name}"] = self.adam_v[name].copy()
        out["feature_mean"] = self.feature_mean.copy()
        out["feature_std"] = self.feature_std.copy()
        out["adam_step"] = self.step
        out["adam_beta1"] = self.beta1
        out["adam_beta2"] = self.beta2
        out["adam_eps"] = self.eps
        return out

    @classmethod
    def from_state(cls, state: dict[str, StateValue]) -> MLP:
        """Rebuild a network from `state()`; raises ValueError when an entry is missing or off."""

        def array(key: str) -> FloatArray:
            value = state.get(key)
            if value is None or np.ndim(value) == 0:
                raise ValueError(f"state entry {key!r} must be an array")
            return np.asarray(value, dtype=np.float64)

        def scalar(key: str) -> float:
            value = state.get(key)
            if value is None or np.ndim(value) != 0:
                raise ValueError(f"state entry {key!r} must be a scalar")
            return float(value)

        step = scalar("adam_step")
        if step != int(step):
            raise ValueError("state entry 'adam_step' must be an integer")
        return cls(
            {name: array(name) for name in PARAMETERS},
            feature_mean=array("feature_mean"),
            feature_std=array("feature_std"),
            adam_m={name: array(f"adam_m_{name}") for name in PARAMETERS},
            adam_v={name: array(f"adam_v_{name}") for name in PARAMETERS},
            step=int(step),
            beta1=scalar("adam_beta1"),
            beta2=scalar("adam_beta2"),
            eps=scalar("adam_eps"),
        )

    def _as_inputs(self, X: npt.ArrayLike) -> FloatArray:
        """`X` as a float64 `(n, n_features)` array."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {x.shape}")
        return x

    def _standardize(self, X: npt.ArrayLike) -> FloatArray:
        """Inputs centred and scaled with the stored standardizer."""
        return (self._as_inputs(X) - self.feature_mean) / self.feature_std

    def _as_labels(self, y: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
        """`y` as int64 class indices, one per row, each in range."""
        labels = np.asarray(y)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"y must be {n} integer class indices, got {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"class indices must lie in [0, {self.n_classes})")
        return labels.astype(np.int64)

    def _forward(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Pre-activations, hidden activations and logits for standardised inputs."""
        pre = x @ self.params["w1"] + self.params["b1"]
        hidden = np.maximum(pre, 0.0)
        logits = hidden @ self.params["w2"] + self.params["b2"]
        return pre, hidden, logits

    def _train_batch(
        self,
        x: FloatArray,
        labels: npt.NDArray[np.int64],
        learning_rate: float,
        weight_decay: float,
    ) -> float:
        """Backpropagate one batch, take one Adam step; returns the batch's summed loss."""
        count = len(x)
        rows = np.arange(count)
        pre, hidden, logits = self._forward(x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        norm = exp.sum(axis=1, keepdims=True)
        # log-softmax from the shifted logits: exact enough and never log(0).
        loss = float(-(shifted[rows, labels] - np.log(norm[:, 0])).sum())
        d_logits = exp / norm
        d_logits[rows, labels] -= 1.0
        d_logits /= count
        d_hidden = d_logits @ self.params["w2"].T
        d_hidden[pre <= 0.0] = 0.0
        grads = {
            "w1": x.T @ d_hidden + weight_decay * self.params["w1"],
            "b1": d_hidden.sum(axis=0),
            "w2": hidden.T @ d_logits + weight_decay * self.params["w2"],
            "b2": d_logits.sum(axis=0),
        }
        self.step += 1
        correction1 = 1.0 - self.beta1**self.step
        correction2 = 1.0 - self.beta2**self.step
        for name in PARAMETERS:
            grad = grads[name]
            m_t = self.adam_m[name]
            v_t = self.adam_v[name]
            m_t *= self.beta1
            m_t += (1.0 - self.beta1) * grad
            v_t *= self.beta2
            v_t += (1.0 - self.beta2) * (grad * grad)
            update = (m_t / correction1) / (np.sqrt(v_t / correction2) + self.eps)
            self.params[name] -= learning_rate * update
        return loss
