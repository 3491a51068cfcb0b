"""Hypernetworks: small generators that turn a random seed z into the weights of a tiny network.

During training a fresh z ~ N(0, I2) is drawn at every step (one per step, shared by the batch);
at evaluation z = 0. What is counted and kept is the generated network, not the generator.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import PATTERN
from models import SingleFilterCNN, TwoLayerBoolNet, pool_conv, two_layer_stacked

SEED_DIM = 2
SLOPE = 0.2


def generator(hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(SEED_DIM, hidden), nn.LeakyReLU(SLOPE), nn.Linear(hidden, out))


def stacked_generator(params: dict[str, Tensor], prefix: str, seed: Tensor) -> Tensor:
    """Run R generators `prefix` (stacked params) on their seeds (R, SEED_DIM) -> (R, out)."""
    def layer(i: int, v: Tensor) -> Tensor:             # bias + weight @ v, per round
        return torch.baddbmm(params[f"{prefix}.{i}.bias"][..., None], params[f"{prefix}.{i}.weight"], v[..., None])[..., 0]
    return layer(2, F.leaky_relu(layer(0, seed), SLOPE))


class HyperCNN(nn.Module):
    """Seed -> Linear(2, 4) -> LeakyReLU(0.2) -> Linear(4, 4) -> one conv kernel; plus a learned bias."""

    n_params = len(PATTERN) + 1          # the generated network: one kernel and one bias

    def __init__(self) -> None:
        super().__init__()
        self._generator = generator(4, len(PATTERN))
        self._bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, seed: Tensor) -> Tensor:
        kernel = self._generator(seed).view(1, 1, -1)
        return F.conv1d(x, kernel).max(dim=2)[0] + self._bias

    def generate(self, seed: Tensor) -> SingleFilterCNN:
        """The network this seed stands for, as a module of its own."""
        with torch.no_grad():
            return SingleFilterCNN(self._generator(seed), self._bias.item())

    def stacked_generate(self, params: dict[str, Tensor], seed: Tensor) -> dict[str, Tensor]:
        """`generate` for R generators (stacked params) and R seeds: the SingleFilterCNN parameters, stacked."""
        kernel = stacked_generator(params, "_generator", seed)          # (R, K)
        return {"kernel": kernel.view(-1, 1, 1, len(PATTERN)), "bias": params["_bias"]}

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, seed: Tensor) -> Tensor:
        net = self.stacked_generate(params, seed)
        return pool_conv(x.squeeze(-2), net["kernel"].flatten(1, 2))[..., 0] + net["bias"]


class HyperBoolNet(nn.Module):
    """Two generators fed the same seed: one gives W1 (2 x 2), the other W2 (2 x 1); plus a bias."""

    n_params = 2 * 2 + 2 + 1

    def __init__(self) -> None:
        super().__init__()
        self._first = generator(3, 4)
        self._second = generator(3, 2)
        self._bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, seed: Tensor) -> Tensor:
        w1 = self._first(seed).view(2, 2)
        w2 = self._second(seed).view(2, 1)
        return F.relu(x @ w1) @ w2 + self._bias

    def generate(self, seed: Tensor) -> TwoLayerBoolNet:
        with torch.no_grad():
            return TwoLayerBoolNet(self._first(seed), self._second(seed), self._bias.item())

    def stacked_generate(self, params: dict[str, Tensor], seed: Tensor) -> dict[str, Tensor]:
        """`generate` for R generators (stacked params) and R seeds: the TwoLayerBoolNet parameters, stacked."""
        return {"w1": stacked_generator(params, "_first", seed).view(-1, 2, 2),
                "w2": stacked_generator(params, "_second", seed).view(-1, 2, 1), "bias": params["_bias"]}

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, seed: Tensor) -> Tensor:
        net = self.stacked_generate(params, seed)
        return two_layer_stacked(x, net["w1"], net["w2"][..., 0], net["bias"])
