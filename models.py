"""The networks of both experiments.

Each class is a plain `nn.Module` whose `forward(x)` reads like the write-up. Beside it,
`stacked_forward(params, x)` runs R networks of the same class at once: every tensor of `params`
carries a leading round dim R (as `torch.func.stack_module_state` lays them out), and x is either
one batch per round (leading dim R) or one batch shared by all rounds. The training engine calls
it; the tests check it against `torch.func.vmap` of `forward`, and the oracle against a plain loop.

Two sizes are told apart: `trained_params` counts the weights gradient descent updates, and
`final_size` the parameters that define the network finally used, beyond fixed random features
(a RandomConv's frozen filters are such features). The write-up's x axis is `final_size`.

Training-time surrogates (`pool='lse'`, `activation='softplus'|'leaky'`) only replace the hard
operator while the module is in training mode: in eval mode every network is evaluated with max
pooling and ReLU, the constraints of the original.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import PROTOCOL_PATTERN, Pattern

POOLS = ("max", "lse")
ACTIVATIONS = ("relu", "softplus", "leaky")
SCHEDULES = ("fixed", "linear")
LEAKY_SLOPE = 0.01
SOFTPLUS_TEMPERATURE = 1.0          # plain softplus; its linear schedule falls from here to 0 (ReLU)


def trained_params(module: nn.Module) -> int:
    """The number of weights gradient descent updates."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Annealable:
    """A network whose training surrogate may be annealed: before every step the engine tells it how far
    training is (0 at the first step, 1 at the last; a float, or one value per round)."""
    _progress: float | Tensor = 0.0

    @property
    def anneals(self) -> bool:
        """Whether its surrogate's temperature follows training's progress (else nobody need tell it)."""
        return getattr(self, "schedule", "fixed") != "fixed"

    def set_progress(self, progress: float | Tensor) -> None:
        self._progress = progress


# ----------------------------------------------------------------------------- pooling over positions

def annealed(temperature: float, schedule: str, progress: float | Tensor) -> float | Tensor:
    """A surrogate's temperature now: fixed, or falling linearly from `temperature` at the first step to
    0 (the hard operator) at the last; `progress` is a float or one value per round."""
    return temperature if schedule == "fixed" else temperature * (1 - progress)


def _smoothed(x: Tensor, temperature: float | Tensor, smooth, hard) -> Tensor:
    """`smooth(x, T)` where T > 0, `hard(x)` where T = 0; T is a float or one value per round (leading dim)."""
    if not isinstance(temperature, Tensor):
        return hard(x) if temperature == 0 else smooth(x, temperature)
    t = temperature.view(-1, *([1] * (x.dim() - 1)))
    safe = torch.where(t > 0, t, torch.ones_like(t))
    soft, exact = smooth(x, safe), hard(x)
    return torch.where((t > 0).view(-1, *([1] * (soft.dim() - 1))), soft, exact)


def lse_pool(conved: Tensor, temperature: float | Tensor) -> Tensor:
    """Smooth max over the last dim: T * logsumexp(x / T); it tends to the max as T -> 0, and is the max at 0."""
    scale = lambda t: t.squeeze(-1) if isinstance(t, Tensor) else t           # T as the pooled result wants it
    return _smoothed(conved, temperature, lambda x, t: scale(t) * torch.logsumexp(x / t, dim=-1), lambda x: x.amax(-1))


def smooth_relu(h: Tensor, temperature: float | Tensor) -> Tensor:
    """T * softplus(h / T): softplus at T = 1, tending to ReLU as T -> 0, ReLU at 0."""
    return _smoothed(h, temperature, lambda x, t: t * F.softplus(x / t), F.relu)


def _windows(x: Tensor, kernel: int) -> Tensor:
    """All windows of the last dim: (..., L) -> (..., L - kernel + 1, kernel)."""
    return x.unfold(-1, kernel, 1)


def _conv_per_round(x: Tensor, w: Tensor) -> Tensor:
    """Valid 1-d correlation of x (R, B, L) with filters w (R, F, K) -> (R, B, F, L - K + 1).

    One broadcast product per tap; accumulated in place when no gradient is needed.
    """
    k = w.shape[-1]
    positions = x.shape[-1] - k + 1
    tap = lambda i: (x[:, :, None, i:i + positions], w[:, None, :, i, None])
    out = torch.mul(*tap(0))
    for i in range(1, k):
        out = out + torch.mul(*tap(i)) if out.requires_grad else out.addcmul_(*tap(i))
    return out


MANY_FILTERS = 8          # from here on, a running max over positions beats one (R, B, F, positions) tensor
RUNNING_ELEMENTS = 2 ** 17  # a running max holds two arrays of (R, b, F) at most this many: together about L2-sized


def running_blocks(x: Tensor, dim: int, per_sequence: int) -> list[Tensor] | None:
    """x cut along `dim` (its sequences) into blocks of near-equal size that keep a running max's arrays
    (per_sequence elements a sequence) within RUNNING_ELEMENTS; None if it fits whole. Near-equal, not a
    small last block: MKL multiplies a matrix of very few rows its own way, with other roundings."""
    most = max(1, RUNNING_ELEMENTS // per_sequence)
    return None if x.shape[dim] <= most else list(x.tensor_split(-(-x.shape[dim] // most), dim))


def _max_conv_per_round(x: Tensor, w: Tensor) -> Tensor:
    """max over positions of x (R, B, L) correlated with w (R, F, K) -> (R, B, F), without autograd.

    A running max over positions (one batched product per position) keeps the working set at (R, B, F)
    instead of (R, B, F, positions): at 32 filters, scoring each round on its own set takes a quarter of the time.
    A block of the batch at a time keeps it in cache: the same sums, 1.7x faster at 28 filters and 2000 sequences.
    """
    blocks = running_blocks(x, 1, w.shape[0] * w.shape[1])
    if blocks is not None:
        return torch.cat([_max_conv_per_round(block, w) for block in blocks], 1)
    windows = _windows(x, w.shape[-1])                  # (R, B, positions, K)
    filters = w.transpose(1, 2)                         # (R, K, F)
    best = torch.bmm(windows[:, :, 0], filters)
    score = torch.empty_like(best)
    for i in range(1, windows.shape[2]):
        torch.bmm(windows[:, :, i], filters, out=score)
        torch.maximum(best, score, out=best)
    return best


BLOCK_ELEMENTS = 2 ** 20   # (R, b, F, positions) at most this many elements at once: cache-sized blocks


def _max_conv_blocked(x: Tensor, w: Tensor) -> Tensor:
    """max over positions of x (R, B, L) correlated with few filters w (R, F, K) -> (R, B, F), without autograd.

    The same sums as `_conv_per_round` (bit for bit), a block of the batch at a time so that the
    (R, b, F, positions) tensor stays about cache-sized: twice as fast at 1-7 filters and 2000 sequences.
    """
    r, b, length = x.shape
    f, k = w.shape[1:]
    block = max(1, BLOCK_ELEMENTS // (r * f * (length - k + 1)))
    return torch.cat([_halving_max(_conv_per_round(x[:, a:a + block], w)) for a in range(0, b, block)], 1)


def pooled_together(x: Tensor, ws: list[Tensor]) -> list[Tensor]:
    """Max over positions of per-round x (R, B, L) correlated, without autograd, with the filters of several
    networks per round, ws[i] (R, F_i, K) -> [(R, B, F_i)]: all of a round's filters in one running max (at
    56 filters, twice as fast as each network's few filters on their own)."""
    if len({v.shape[-1] for v in ws}) > 1:                 # filters of other lengths: each network on its own
        return [pool_conv(x, v) for v in ws]
    return list(pool_conv(x, torch.cat(ws, 1)).split([v.shape[1] for v in ws], dim=-1))


def _halving_max(x: Tensor) -> Tensor:
    """max over the last dim by overlapping halves (exact, as a max is): twice as fast as `amax` on a
    short last dim such as 61 positions."""
    n = x.shape[-1]
    while n > 1:
        half = (n + 1) // 2
        x = torch.maximum(x[..., :half], x[..., n - half:n])
        n = half
    return x[..., 0]


def _max_conv_shared(x: Tensor, w: Tensor) -> Tensor:
    """max over positions of x (B, L) correlated with w (R, F, K) -> (R, B, F), without autograd.

    A running max over positions keeps the working set at (B, R*F) instead of (B, R*F, positions), and a
    block of the batch at a time keeps it in cache: 3-6x faster on a large test set, the same sums.
    """
    blocks = running_blocks(x, 0, w.shape[0] * w.shape[1])
    if blocks is not None:
        return torch.cat([_max_conv_shared(block, w) for block in blocks], 1)
    r, f, k = w.shape
    filters = w.reshape(r * f, k).t()
    windows = _windows(x, k).transpose(0, 1)            # (positions, B, K)
    best = windows[0] @ filters
    score = torch.empty_like(best)
    for window in windows[1:]:
        torch.mm(window, filters, out=score)
        torch.maximum(best, score, out=best)
    return best.view(-1, r, f).transpose(0, 1)


def pool_conv(x: Tensor, w: Tensor, pool: str = "max", temperature: float | Tensor = 1.0) -> Tensor:
    """Pool over positions of the correlation of sequences x with filters w (R, F, K) -> (R, B, F).

    x is (R, B, L) (a batch per round) or (B, L) (shared). For max pooling, the gradient flows
    through the arg-max window alone, as autograd routes it through `Tensor.max`; the values are
    recomputed from that window so that only (R, B, F, K) products enter the graph.
    """
    if x.dim() == 2:
        if pool != "max" or torch.is_grad_enabled():
            x = x.expand(w.shape[0], *x.shape)
        else:
            return _max_conv_shared(x, w)
    elif pool == "max" and not torch.is_grad_enabled():
        return (_max_conv_per_round if w.shape[1] >= MANY_FILTERS else _max_conv_blocked)(x, w)
    if pool == "lse":
        return lse_pool(_conv_per_round(x, w), temperature)
    with torch.no_grad():
        where = _conv_per_round(x, w.detach()).max(-1)[1]              # (R, B, F)
    windows = _windows(x, w.shape[-1])                                  # (R, B, T, K)
    index = where[..., None].expand(*where.shape, w.shape[-1])
    picked = windows.gather(2, index)                                   # (R, B, F, K)
    return (picked * w[:, None]).sum(-1)


# ----------------------------------------------------------------------------- experiment 1

class NaiveCNN(Annealable, nn.Module):
    """Conv1d(1 -> n filters, kernel 4, no bias) -> max over positions -> Linear(n -> 1).

    `frozen_conv=True` is RandomConv: the filters keep their random init, only `decision` learns.
    `pool="lse"` trains through log-sum-exp pooling at `temperature`, fixed or (`schedule="linear"`)
    annealed to the hard max at each round's last step.
    """

    def __init__(self, n_filters: int, frozen_conv: bool = False, pool: str = "max",
                 temperature: float = 0.1, schedule: str = "fixed", kernel_size: int = PROTOCOL_PATTERN.size) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels=1, out_channels=n_filters, kernel_size=kernel_size, bias=False)
        self.decision = nn.Linear(n_filters, 1)
        self.conv.weight.requires_grad_(not frozen_conv)
        self.pool, self.temperature, self.schedule = pool, temperature, schedule

    @property
    def trained_params(self) -> int:
        """5n + 1 (Naive) or n + 1 (RandomConv)."""
        return trained_params(self)

    final_size = trained_params              # a RandomConv's frozen filters are fixed random features

    def _temperature(self) -> float | Tensor:
        return annealed(self.temperature, self.schedule, self._progress)

    def _pool(self, conved: Tensor) -> Tensor:
        if self.training and self.pool == "lse":
            return lse_pool(conved, self._temperature())
        return conved.max(dim=2)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.decision(self._pool(self.conv(x)))

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        pool = self.pool if self.training else "max"
        w = params["conv.weight"].flatten(1, 2)                          # (R, F, K)
        pooled = pool_conv(x.squeeze(-2), w, pool, self._temperature())  # (R, B, F)
        return self.decide(pooled, params)

    @staticmethod
    def decide(pooled: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Logits (R, B) from the filters' pooled responses (R, B, F): the linear decision on them."""
        decision = params["decision.weight"][:, 0]                       # (R, F)
        return torch.einsum("rbf,rf->rb", pooled, decision) + params["decision.bias"]

    @staticmethod
    @torch.no_grad()
    def stacked_forward_together(params: list[dict[str, Tensor]], x: Tensor) -> list[Tensor]:
        """Eval-mode logits of several groups of NaiveCNNs (any filter counts, one kernel size) that meet the
        same per-round batch x (R, B, 1, L): `stacked_forward` of each, with all their filters pooled at once."""
        pooled = pooled_together(x.squeeze(-2), [p["conv.weight"].flatten(1, 2) for p in params])
        return [NaiveCNN.decide(v, p) for v, p in zip(pooled, params)]


class SingleFilterCNN(nn.Module):
    """One filter, max over positions, plus a bias: the 5-parameter network a HyperCNN generates."""

    def __init__(self, kernel: Tensor, bias: float) -> None:
        super().__init__()
        self.kernel = nn.Parameter(kernel.reshape(1, 1, -1).clone())
        self.bias = nn.Parameter(torch.tensor([float(bias)]))

    @property
    def trained_params(self) -> int:
        return trained_params(self)

    final_size = trained_params

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.kernel).max(dim=2)[0] + self.bias

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        pooled = pool_conv(x.squeeze(-2), params["kernel"].flatten(1, 2))
        return pooled[..., 0] + params["bias"]


def hardcoded_cnn(pattern: Pattern = PROTOCOL_PATTERN) -> SingleFilterCNN:
    """The pattern as a kernel ([1, 1, 0, 1] for the protocol's): a match scores exactly its number of
    1s (3), any other window less (below 2); the bias sits halfway."""
    return SingleFilterCNN(torch.tensor(pattern.kernel), bias=pattern.bias())


# ----------------------------------------------------------------------------- experiment 2

def activate(h: Tensor, activation: str, temperature: float | Tensor = SOFTPLUS_TEMPERATURE) -> Tensor:
    if activation == "softplus":
        return smooth_relu(h, temperature)
    if activation == "leaky":
        return F.leaky_relu(h, LEAKY_SLOPE)
    return F.relu(h)


class NaiveBoolNet(Annealable, nn.Module):
    """Linear(2 -> width) -> ReLU -> Linear(width -> 1).

    `activation="softplus"|"leaky"` trains through a smooth surrogate of ReLU; softplus may be annealed
    (`schedule="linear"`) to ReLU itself at each round's last step.
    """

    def __init__(self, width: int, activation: str = "relu", schedule: str = "fixed") -> None:
        super().__init__()
        self.hidden = nn.Linear(2, width)
        self.output = nn.Linear(width, 1)
        self.activation, self.schedule = activation, schedule

    @property
    def trained_params(self) -> int:
        """4w + 1."""
        return trained_params(self)

    final_size = trained_params

    def _activation(self) -> str:
        return self.activation if self.training else "relu"

    def _activate(self, h: Tensor) -> Tensor:
        return activate(h, self._activation(), annealed(SOFTPLUS_TEMPERATURE, self.schedule, self._progress))

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self._activate(self.hidden(x)))

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """Without autograd and with an activation computed exactly (ReLU, leaky ReLU: not softplus, whose
        vectorized and scalar code differ in the last bit), a block of the batch at a time, so that the hidden
        activations stay about cache-sized, unit-major: the same logits, 2-3x faster on a large batch."""
        if torch.is_grad_enabled() or self._activation() == "softplus":
            return self._logits(params, x)
        rounds, width = params["hidden.weight"].shape[:2]
        block = max(1, BLOCK_ELEMENTS // (rounds * width))
        blocks = range(0, x.shape[-2], block)
        return torch.cat([self._logits_by_unit(params, x[..., a:a + block, :]) for a in blocks], -1)

    def _logits(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        w1, b1 = params["hidden.weight"], params["hidden.bias"]           # (R, W, 2), (R, W)
        w2, b2 = params["output.weight"][:, 0], params["output.bias"]     # (R, W), (R, 1)
        h = self._activate(_dense(x, w1.transpose(1, 2), b1))
        return (h * w2[:, None]).sum(-1) + b2

    def _logits_by_unit(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """`_logits` with the hidden layer unit-major (R, W, B): the same multiply-adds, ReLU and products
        (elementwise, exactly rounded, so the layout changes no bit), each over the batch as one long row.
        The sum over units is `_logits`' own, on the same (R, B, W) layout; at a width of at most 2 every
        order gives the same value, so it is taken unit-major too (a zero logit may change sign, which no
        decision `logit > 0` reads)."""
        w1, b1 = params["hidden.weight"], params["hidden.bias"]
        w2, b2 = params["output.weight"][:, 0], params["output.bias"]
        xt = x.transpose(-1, -2).contiguous()                             # (2, B) or (R, 2, B)
        h = torch.addcmul(b1[..., None], xt[..., 0, None, :], w1[..., 0, None])
        h = self._activate(h.addcmul_(xt[..., 1, None, :], w1[..., 1, None])).mul_(w2[..., None])
        return (h.sum(1) if h.shape[1] <= 2 else h.transpose(1, 2).contiguous().sum(-1)) + b2


class TwoLayerBoolNet(nn.Module):
    """relu(x W1) W2 + b with W1 (2 x 2), W2 (2 x 1): the width-2 network a HyperBoolNet generates."""

    def __init__(self, w1: Tensor, w2: Tensor, bias: float) -> None:
        super().__init__()
        self.w1 = nn.Parameter(w1.reshape(2, 2).clone())
        self.w2 = nn.Parameter(w2.reshape(2, 1).clone())
        self.bias = nn.Parameter(torch.tensor([float(bias)]))

    @property
    def trained_params(self) -> int:
        return trained_params(self)

    final_size = trained_params

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x @ self.w1) @ self.w2 + self.bias

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return two_layer_stacked(x, params["w1"], params["w2"][..., 0], params["bias"])


def two_layer_stacked(x: Tensor, w1: Tensor, w2: Tensor, bias: Tensor) -> Tensor:
    """relu(x W1) W2 + b for R networks: W1 (R, 2, H), W2 (R, H), b (R, 1) -> logits (R, B)."""
    h = F.relu(_dense(x, w1))
    return (h * w2[:, None]).sum(-1) + bias


def _dense(x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (R, B, I) or shared (B, I) times per-round weights w (R, I, H), plus a bias (R, H) -> (R, B, H).

    One multiply-add per input: for I = 2 this beats a batched matmul.
    """
    first = x[..., 0, None], w[:, None, 0]
    out = torch.mul(*first) if bias is None else torch.addcmul(bias[:, None], *first)
    for i in range(1, w.shape[1]):
        out = torch.addcmul(out, x[..., i, None], w[:, None, i])
    return out


def hardcoded_bool_net() -> TwoLayerBoolNet:
    """-100 relu(-x1) - 100 relu(-x2) + 10: the write-up's width-2 solution, as a real network."""
    return TwoLayerBoolNet(-torch.eye(2), torch.tensor([-100.0, -100.0]), bias=10.0)
