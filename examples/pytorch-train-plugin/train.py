"""The built-in train action, its network trained by PyTorch.

torch is imported only when a run trains (`torch_network`), so a worker without torch still
loads this plugin and says what is missing when the action runs.
"""

from __future__ import annotations

from runmesh.train.model import MLP
from runmesh.train.train_action import BaseTrain


class Train(BaseTrain):
    """`BaseTrain` with `network` swapped for a PyTorch-trained one."""

    def network(self, network: MLP) -> MLP:
        """The same weights, trained by PyTorch on the best device there is."""
        from .torch_network import TorchMLP

        trained = TorchMLP.of(network)
        self.run.log_message(f"training with PyTorch on {trained.device}")
        return trained
