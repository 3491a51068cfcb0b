"""Hypernetworks: small generators that turn a latent z into the weights of a tiny network.

During training a fresh z ~ N(0, I2) is drawn at every step (one per step, shared by the batch);
at evaluation z = 0, which is also what `forward` uses when no z is given. What is kept is the
generated network (`final_size` parameters), not the generator (`trained_params` weights).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import PROTOCOL_PATTERN
from models import SingleFilterCNN, TwoLayerBoolNet, pool_conv, trained_params, two_layer_stacked

Z_DIM = 2
SLOPE = 0.2


def generator(hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(Z_DIM, hidden), nn.LeakyReLU(SLOPE), nn.Linear(hidden, out))


def stacked_generator(params: dict[str, Tensor], prefix: str, z: Tensor) -> Tensor:
    """Run R generators `prefix` (stacked params) on their latents (R, Z_DIM) -> (R, out)."""
    def layer(i: int, v: Tensor) -> Tensor:             # bias + weight @ v, per round
        return torch.baddbmm(params[f"{prefix}.{i}.bias"][..., None], params[f"{prefix}.{i}.weight"], v[..., None])[..., 0]
    return layer(2, F.leaky_relu(layer(0, z), SLOPE))


class Hypernetwork(nn.Module):
    """What both hypernetworks share: a latent input that defaults to z = 0, and their two sizes."""

    final_size: int                      # parameters of the generated network

    @property
    def trained_params(self) -> int:
        return trained_params(self)

    @staticmethod
    def latent(x: Tensor, z: Tensor | None, rounds: int | None = None) -> Tensor:
        """z, or z = 0 (one per round when `rounds` is given) on x's device."""
        if z is not None:
            return z
        return torch.zeros(*(() if rounds is None else (rounds,)), Z_DIM, device=x.device)


def training_inputs(net: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, ...]:
    """The inputs a network trains on: a hypernetwork takes the step's latent z, any other network x alone."""
    return (x, z) if isinstance(net, Hypernetwork) else (x,)


class HyperCNN(Hypernetwork):
    """z -> Linear(2, 4) -> LeakyReLU(0.2) -> Linear(4, kernel) -> one conv kernel; plus a learned bias."""

    def __init__(self, kernel_size: int = PROTOCOL_PATTERN.size) -> None:
        super().__init__()
        self.generator = generator(4, kernel_size)
        self.bias = nn.Parameter(torch.zeros(1))

    @property
    def final_size(self) -> int:
        """The generated network: one kernel and one bias."""
        return self.generator[2].out_features + 1

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        kernel = self.generator(self.latent(x, z)).view(1, 1, -1)
        return F.conv1d(x, kernel).max(dim=2)[0] + self.bias

    def generate(self, z: Tensor) -> SingleFilterCNN:
        """The network this latent stands for, as a module of its own."""
        with torch.no_grad():
            return SingleFilterCNN(self.generator(z), self.bias.item())

    def stacked_generate(self, params: dict[str, Tensor], z: Tensor) -> dict[str, Tensor]:
        """`generate` for R generators (stacked params) and R latents: the SingleFilterCNN parameters, stacked."""
        kernel = stacked_generator(params, "generator", z)             # (R, K)
        return {"kernel": kernel[:, None, None], "bias": params["bias"]}

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, z: Tensor | None = None) -> Tensor:
        net = self.stacked_generate(params, self.latent(x, z, len(params["bias"])))
        return pool_conv(x.squeeze(-2), net["kernel"].flatten(1, 2))[..., 0] + net["bias"]


class HyperBoolNet(Hypernetwork):
    """Two generators fed the same z: one gives W1 (2 x 2), the other W2 (2 x 1); plus a bias."""

    final_size = 2 * 2 + 2 + 1

    def __init__(self) -> None:
        super().__init__()
        self.first = generator(3, 4)
        self.second = generator(3, 2)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        z = self.latent(x, z)
        return F.relu(x @ self.first(z).view(2, 2)) @ self.second(z).view(2, 1) + self.bias

    def generate(self, z: Tensor) -> TwoLayerBoolNet:
        with torch.no_grad():
            return TwoLayerBoolNet(self.first(z), self.second(z), self.bias.item())

    def stacked_generate(self, params: dict[str, Tensor], z: Tensor) -> dict[str, Tensor]:
        """`generate` for R generators (stacked params) and R latents: the TwoLayerBoolNet parameters, stacked."""
        return {"w1": stacked_generator(params, "first", z).view(-1, 2, 2),
                "w2": stacked_generator(params, "second", z).view(-1, 2, 1), "bias": params["bias"]}

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, z: Tensor | None = None) -> Tensor:
        net = self.stacked_generate(params, self.latent(x, z, len(params["bias"])))
        return two_layer_stacked(x, net["w1"], net["w2"][..., 0], net["bias"])
