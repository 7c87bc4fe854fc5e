"""`TorchMLP`: the built-in numpy network, each epoch run by PyTorch (CUDA when available).

The weights, the standardizer and Adam's moments stay in the numpy network's arrays between
epochs, so everything else (checkpoints, resuming, the registered `.npz`, inference with
numpy) is unchanged. Each epoch copies them to the device, runs the mini-batches in the
order the numpy generator draws (the same shuffles as the numpy trainer), and copies them
back. Weight decay applies to the weight matrices only, as in the numpy network.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from runmesh.train.model import MLP


def best_device() -> str:
    """`cuda` when a GPU is usable, else `cpu`."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchMLP(MLP):
    """An `MLP` whose `train_epoch` runs in PyTorch on `device`."""

    device: str = "cpu"

    @classmethod
    def of(cls, network: MLP, device: str | None = None) -> TorchMLP:
        """The same network (weights, standardizer, Adam state), trained by PyTorch."""
        copy = cls.from_state(network.state())
        assert isinstance(copy, TorchMLP)
        copy.device = device or best_device()
        return copy

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
        """One pass in mini-batches shuffled by `rng`; returns the mean cross-entropy."""
        if learning_rate <= 0 or batch_size < 1 or weight_decay < 0:
            raise ValueError("need learning_rate > 0, batch_size >= 1 and weight_decay >= 0")
        x = self._standardize(X)
        labels = self._as_labels(y, len(x))
        if len(x) == 0:
            raise ValueError("cannot train on no rows")
        device = torch.device(self.device)
        inputs = torch.as_tensor(x, dtype=torch.float64, device=device)
        targets = torch.as_tensor(labels, device=device)
        model = nn.Sequential(
            nn.Linear(self.n_features, self.n_hidden),
            nn.ReLU(),
            nn.Linear(self.n_hidden, self.n_classes),
        ).to(device=device, dtype=torch.float64)
        # numpy keeps (in, out) matrices; torch's Linear keeps (out, in).
        tensors = {
            "w1": model[0].weight,
            "b1": model[0].bias,
            "w2": model[2].weight,
            "b2": model[2].bias,
        }
        optimizer = torch.optim.Adam(
            [
                {"params": [tensors["w1"], tensors["w2"]], "weight_decay": weight_decay},
                {"params": [tensors["b1"], tensors["b2"]], "weight_decay": 0.0},
            ],
            lr=learning_rate,
            betas=(self.beta1, self.beta2),
            eps=self.eps,
        )
        with torch.no_grad():
            for name, tensor in tensors.items():
                tensor.copy_(self._to_torch(self.params[name], name, device))
                optimizer.state[tensor] = {
                    "step": torch.tensor(float(self.step), dtype=torch.float64),
                    "exp_avg": self._to_torch(self.adam_m[name], name, device),
                    "exp_avg_sq": self._to_torch(self.adam_v[name], name, device),
                }
        loss_fn = nn.CrossEntropyLoss()
        order = torch.as_tensor(rng.permutation(len(x)), device=device)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(batch)
        with torch.no_grad():
            for name, tensor in tensors.items():
                state = optimizer.state[tensor]
                self.params[name] = self._to_numpy(tensor, name)
                self.adam_m[name] = self._to_numpy(state["exp_avg"], name)
                self.adam_v[name] = self._to_numpy(state["exp_avg_sq"], name)
            self.step = int(optimizer.state[tensors["w1"]]["step"])
        return total / len(x)

    @staticmethod
    def _to_torch(array: npt.NDArray[np.float64], name: str, device: torch.device) -> torch.Tensor:
        tensor = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float64, device=device)
        return tensor.T.contiguous() if name.startswith("w") else tensor.clone()

    @staticmethod
    def _to_numpy(tensor: torch.Tensor, name: str) -> npt.NDArray[np.float64]:
        array = tensor.detach().to("cpu").numpy().astype(np.float64)
        return np.ascontiguousarray(array.T if name.startswith("w") else array)
