"""The explorers the write-up names, on stacked parameters: particle swarms, an evolution strategy, noisy and
perturbed SGD, memetic hybrids of them, and the multiply-add counts to put them on one budget.

Every explorer runs R independent searches ("rounds") at once. A population of k candidates per round is a
stack of R*k rows, round r's candidates at rows r*k .. r*k + k - 1, each row one flat parameter vector (the
template's parameters in `named_parameters` order, frozen ones too: a population explorer moves every weight).
A fitness maps positions (R*k, D) to losses (R*k,), lower is better; `network_loss` makes one of a network
class (binary cross-entropy, as `engine.train` minimises).

Population explorers speak ask/tell: `ask()` gives the positions to evaluate, `tell(x, loss)` takes them back
(possibly moved by gradient steps: a Lamarckian memetic hybrid, `evolve`), `best()` the best found per round.
Noisy and perturbed SGD are optimizer factories shaped like `engine.make_optimizer`'s, for `engine.train`.
"""
import math
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import engine
from data import PROTOCOL_PATTERN

Fitness = Callable[[Tensor], Tensor]          # positions (N, D) -> loss (N,), lower is better
Descend = Callable[[Tensor], Tensor]          # positions (N, D) -> positions after one gradient step


class Explorer(Protocol):
    def ask(self) -> Tensor: ...
    def tell(self, x: Tensor, loss: Tensor) -> None: ...
    def best(self) -> tuple[Tensor, Tensor]: ...


# ----------------------------------------------------------------------------- networks as flat vectors

def shapes_of(template: nn.Module) -> dict[str, torch.Size]:
    """The shape of every parameter of the template, in the order of a flat vector."""
    return {name: p.shape for name, p in template.named_parameters()}


def flatten(params: dict[str, Tensor]) -> Tensor:
    """Stacked parameters {name: (N, ...)} -> positions (N, D)."""
    return torch.cat([p.flatten(1) for p in params.values()], 1)


def unflatten(x: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    """Positions (N, D) -> stacked parameters {name: (N, *shape)} (contiguous, in the graph of x)."""
    sizes = [math.prod(s) for s in shapes.values()]
    return {name: part.reshape(len(x), *s).contiguous()
            for (name, s), part in zip(shapes.items(), x.split(sizes, 1))}


def population(template: nn.Module, rounds: int, k: int, gen: torch.Generator) -> Tensor:
    """k candidates per round, each a fresh default init of the template: positions (rounds, k, D)."""
    return flatten(engine.init_stack([template], rounds * k, gen).params).view(rounds, k, -1)


def network_loss(template: nn.Module, batch: Callable[[], engine.Batch]) -> Fitness:
    """Binary cross-entropy on logits of the template's class at each position, per row as `engine.train` takes
    it (mean over the row's batch). `batch()` is called once per evaluation and gives (inputs, y): inputs with a
    leading N dim (or x shared by all rows), y (N, B). The template's mode (train/eval) is the caller's."""
    shapes = shapes_of(template)

    def loss(x: Tensor) -> Tensor:
        inputs, y = batch()
        logits = template.stacked_forward(unflatten(x, shapes), *inputs)
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
    return loss


# ----------------------------------------------------------------------------- particle swarm

INERTIA = 0.7298          # Clerc & Kennedy 2002: constriction chi at phi = c1 + c2 = 4.1 ...
ACCELERATION = 1.49618    # ... and c = chi * 2.05, so that v <- w v + c r1 (p - x) + c r2 (g - x)


class PSO:
    """Particle swarm optimisation (Kennedy & Eberhart 1995) with the constriction coefficients of Clerc &
    Kennedy 2002, a global-best topology within each round's swarm and personal bests; synchronous: every
    particle moves towards the bests known before the move.

    Velocities start at zero: the first move is then pure attraction towards the round's best, the swarm starts
    inside the region its positions were drawn from (a network's default init range), and no velocity scale has
    to be chosen; Engelbrecht (2012, "Particle swarm optimization: velocity initialization") found random initial
    velocities no better and prone to leave the search region. `vmax` clamps every velocity component.
    """

    def __init__(self, x: Tensor, loss: Tensor, gen: torch.Generator, w: float = INERTIA, c1: float = ACCELERATION,
                 c2: float = ACCELERATION, vmax: float | None = None) -> None:
        """x: starting positions (R, P, D); loss: their fitness, (R*P,) or (R, P)."""
        self.x, self.v = x.clone(), torch.zeros_like(x)
        self.best_x, self.best_f = x.clone(), loss.reshape(x.shape[:2]).clone()
        self.gen, self.w, self.c1, self.c2, self.vmax = gen, w, c1, c2, vmax

    def leader(self) -> tuple[Tensor, Tensor]:
        """Each round's global best: position (R, D) and loss (R,)."""
        f, i = self.best_f.min(1)
        return self.best_x[torch.arange(len(i)), i], f

    best = leader

    def draws(self) -> tuple[Tensor, Tensor]:
        """r1, r2 ~ U[0, 1), one per particle and dimension."""
        r = torch.rand(2, *self.x.shape, generator=self.gen, device=self.x.device)
        return r[0], r[1]

    def ask(self, draws: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Move every particle (with given r1, r2 if any) and give the new positions (R*P, D)."""
        r1, r2 = self.draws() if draws is None else draws
        g = self.leader()[0][:, None]
        self.v = self.w * self.v + self.c1 * r1 * (self.best_x - self.x) + self.c2 * r2 * (g - self.x)
        if self.vmax is not None:
            self.v = self.v.clamp(-self.vmax, self.vmax)
        self.x = self.x + self.v
        return self.x.flatten(0, 1)

    def tell(self, x: Tensor, loss: Tensor) -> None:
        """Take the evaluated positions (R*P, D) back (they replace the particles': Lamarckian) with their
        losses, and update the personal bests."""
        self.x = x.reshape(self.x.shape).clone()
        f = loss.reshape(self.best_f.shape)
        better = f < self.best_f
        self.best_x = torch.where(better[..., None], self.x, self.best_x)
        self.best_f = torch.where(better, f, self.best_f)


# ----------------------------------------------------------------------------- evolution strategy

class SepCMAES:
    """Separable CMA-ES (Ros & Hansen 2008): CMA-ES (Hansen & Ostermeier 2001) with a diagonal covariance, whose
    learning rates c1, cmu are those of Hansen's tutorial (2016, positive weights only) times (D + 2) / 3.

    Round r samples x = m_r + sigma_r * sqrt(c_r) * z, z ~ N(0, I), lambda candidates; the mu = lambda // 2
    best set the new mean, cumulative step-size adaptation sets sigma, rank-one and rank-mu updates set c.
    """

    def __init__(self, mean: Tensor, sigma: float, gen: torch.Generator, popsize: int | None = None) -> None:
        """mean: starting means (R, D); sigma: starting step size; popsize: lambda, 4 + floor(3 ln D) by default."""
        rounds, n = mean.shape
        self.lam = popsize or 4 + int(3 * math.log(n))
        mu = self.lam // 2
        w = math.log((self.lam + 1) / 2) - torch.log(torch.arange(1, mu + 1, dtype=mean.dtype, device=mean.device))
        self.weights = w / w.sum()
        self.mueff = float(1 / (self.weights ** 2).sum())
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.ds = 1 + 2 * max(0.0, math.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        self.c1 = (n + 2) / 3 * 2 / ((n + 1.3) ** 2 + self.mueff)
        self.cmu = min(1 - self.c1, (n + 2) / 3 * 2 * (self.mueff - 2 + 1 / self.mueff) / ((n + 2) ** 2 + self.mueff))
        self.chi = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n ** 2))          # E |N(0, I)|
        self.mean, self.sigma = mean.clone(), torch.full((rounds,), float(sigma), dtype=mean.dtype, device=mean.device)
        self.c, self.ps, self.pc = torch.ones_like(mean), torch.zeros_like(mean), torch.zeros_like(mean)
        self.best_x, self.best_f = mean.clone(), torch.full_like(self.sigma, math.inf)
        self.gen, self.generation = gen, 0

    def ask(self) -> Tensor:
        """lambda candidates per round: positions (R*lambda, D)."""
        z = torch.randn(len(self.mean), self.lam, self.mean.shape[1], generator=self.gen, device=self.mean.device)
        x = self.mean[:, None] + self.sigma[:, None, None] * self.c.sqrt()[:, None] * z
        return x.flatten(0, 1)

    def best(self) -> tuple[Tensor, Tensor]:
        """The best candidate evaluated so far per round: position (R, D) and loss (R,)."""
        return self.best_x, self.best_f

    def tell(self, x: Tensor, loss: Tensor) -> None:
        """Update every round's distribution from its evaluated candidates (R*lambda, D), as they are given:
        candidates moved by gradient steps count where they landed (Lamarckian)."""
        rounds, n = self.mean.shape
        x, f = x.reshape(rounds, self.lam, n), loss.reshape(rounds, self.lam)
        self._remember(x, f)
        order = f.argsort(1)[:, :len(self.weights)]
        y = (x.gather(1, order[..., None].expand(-1, -1, n)) - self.mean[:, None]) / self.sigma[:, None, None]
        yw = (self.weights[:, None] * y).sum(1)                                 # (R, D)
        self.mean = self.mean + self.sigma[:, None] * yw
        self.generation += 1
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * self.mueff) * yw / self.c.sqrt()
        norm = self.ps.norm(dim=1)
        hs = (norm / math.sqrt(1 - (1 - self.cs) ** (2 * self.generation)) < (1.4 + 2 / (n + 1)) * self.chi).to(x.dtype)
        self.pc = (1 - self.cc) * self.pc + hs[:, None] * math.sqrt(self.cc * (2 - self.cc) * self.mueff) * yw
        keep = 1 - self.c1 - self.cmu + self.c1 * (1 - hs) * self.cc * (2 - self.cc)
        rank_mu = (self.weights[:, None] * y ** 2).sum(1)
        self.c = keep[:, None] * self.c + self.c1 * self.pc ** 2 + self.cmu * rank_mu
        self.sigma = self.sigma * torch.exp(self.cs / self.ds * (norm / self.chi - 1))

    def _remember(self, x: Tensor, f: Tensor) -> None:
        """Keep each round's best candidate so far."""
        fmin, i = f.min(1)
        better = fmin < self.best_f
        self.best_x = torch.where(better[:, None], x[torch.arange(len(i)), i], self.best_x)
        self.best_f = torch.where(better, fmin, self.best_f)


# ----------------------------------------------------------------------------- memetic hybrids

def evolve(explorer: Explorer, loss: Fitness, generations: int, descend: Descend | None = None, steps: int = 0
           ) -> Explorer:
    """Run `generations` generations of ask -> `steps` gradient steps -> evaluate -> tell.

    With steps > 0 this is a Lamarckian memetic algorithm: every candidate takes `steps` calls of `descend`
    before it is evaluated, and the improved weights replace it in the population. With steps = 0, the plain
    explorer.
    """
    for _ in range(generations):
        x = explorer.ask()
        for _ in range(steps):
            x = descend(x)
        explorer.tell(x, loss(x))
    return explorer


class Descent:
    """A `Descend` for `evolve`: one step of an engine optimizer on loss(x).sum() per call.

    The positions live in one tensor across calls, so the optimizer's state (SGD's momentum) follows each row
    from call to call, through the explorer's moves. `optimizer` is a factory `(params, rows) -> Optimizer` as
    `engine.make_optimizer` gives; a per-round value in it must have one entry per row (R*k).
    """

    def __init__(self, loss: Fitness, optimizer: Callable[..., engine.Optimizer]) -> None:
        self.loss, self.optimizer = loss, optimizer
        self.x: Tensor | None = None
        self.opt: engine.Optimizer | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.x is None:
            self.x = x.detach().clone().requires_grad_()
            self.opt = self.optimizer([self.x])
        else:
            with torch.no_grad():
                self.x.copy_(x)
        self.opt.zero_grad()
        self.loss(self.x).sum().backward()
        self.opt.step()
        return self.x.detach().clone()


# ----------------------------------------------------------------------------- noisy gradient descent

def trained_masks(stack: engine.Stack) -> list[Tensor]:
    """The stack's masks in the order `engine.train` hands its parameters to the optimizer (for the noisy ones:
    noise must not move a padded or frozen entry)."""
    return [m for m in stack.masks.values() if m.any()]


def _rows(value: float | Tensor, rows: slice) -> float | Tensor:
    return value[rows] if isinstance(value, Tensor) else value


class NoisySGD(engine.Optimizer):
    """Engine SGD (momentum included) on the gradient plus annealed Gaussian noise: g + sigma_t * N(0, I) with
    sigma_t = sigma0 / (1 + t)^gamma at step t = 0, 1, ... The noise enters before momentum, as a gradient would.

    SGLD-style (Welling & Teh 2011, whose injected noise decays polynomially with the step); as annealed
    gradient noise it is Neelakantan et al. 2015's schedule, variance eta / (1 + t)^0.55, at gamma = 0.275.
    Every entry of every round draws its own noise, from `gen`; entries where `masks` is 0 get none.
    """

    def __init__(self, params: list[Tensor], lr: float | Tensor, momentum: float | Tensor, sigma0: float | Tensor,
                 gamma: float, gen: torch.Generator, masks: list[Tensor] | None = None) -> None:
        super().__init__(params, "sgd", lr, momentum)
        self.sigma0, self.gamma, self.gen = sigma0, gamma, gen
        self.masks = masks or [torch.ones_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        sigma = self.sigma0 / (1 + self.t) ** self.gamma
        for p, mask in zip(self.params, self.masks):
            noise = torch.randn(p.shape, generator=self.gen, device=p.device)
            p.grad.add_(noise * self._each(sigma, p) * mask)
        super().step()


def noisy_sgd(lr: float | Tensor, momentum: float | Tensor, sigma0: float | Tensor, gamma: float,
              gen: torch.Generator, masks: list[Tensor] | None = None) -> Callable[..., NoisySGD]:
    """A factory `(params, rows=slice(None)) -> NoisySGD`, as `engine.make_optimizer` gives; lr, momentum and
    sigma0 may hold one value per round, `masks` (`trained_masks` of the whole stack) are cut to `rows` too."""
    return lambda params, rows=slice(None): NoisySGD(
        params, _rows(lr, rows), _rows(momentum, rows), _rows(sigma0, rows), gamma, gen,
        None if masks is None else [m[rows] for m in masks])


class PerturbedSGD(engine.Optimizer):
    """Perturbed gradient descent (Jin et al. 2017, Algorithm 2) around engine SGD (momentum included): a round
    whose gradient norm is below `threshold` (g_thres, strictly) and whose last kick is more than `wait` steps
    old (t_thres) has its weights kicked by xi, uniform in the ball of radius `radius` over its trained entries.

    One gradient per step, as a drop-in optimizer has: the step uses the gradient at the point before the kick
    (Jin et al. take it after), and the gradient is the minibatch one. Their stopping rule is left out: training
    runs its steps. Kicks are drawn from `gen`, independently per round.
    """

    def __init__(self, params: list[Tensor], lr: float | Tensor, momentum: float | Tensor, threshold: float | Tensor,
                 radius: float | Tensor, wait: int, gen: torch.Generator, masks: list[Tensor] | None = None) -> None:
        super().__init__(params, "sgd", lr, momentum)
        self.threshold, self.radius, self.wait, self.gen = threshold, radius, wait, gen
        self.masks = masks or [torch.ones_like(p) for p in params]
        self.last_kick = torch.full((len(params[0]),), -wait - 1, device=params[0].device)

    def _norms(self, tensors: list[Tensor]) -> Tensor:
        """The norm of each round's trained entries, over all tensors: (R,)."""
        return sum((t * m).square().flatten(1).sum(1) for t, m in zip(tensors, self.masks)).sqrt()

    @torch.no_grad()
    def step(self) -> None:
        t = self.t
        kick = (self._norms([p.grad for p in self.params]) < self.threshold) & (t - self.last_kick > self.wait)
        super().step()
        if kick.any():
            self._kick(kick)
            self.last_kick[kick] = t

    def _kick(self, kick: Tensor) -> None:
        """x += xi on the kicked rounds, xi uniform in the ball: a Gaussian direction, radius * U^(1/dims)."""
        noise = [torch.randn(p.shape, generator=self.gen, device=p.device) * m for p, m in zip(self.params, self.masks)]
        dims = sum(m.flatten(1).sum(1) for m in self.masks)
        u = torch.rand(len(dims), generator=self.gen, device=dims.device)
        scale = torch.where(kick, self.radius * u ** (1 / dims) / self._norms(noise), 0.0)
        for p, n in zip(self.params, noise):
            p.add_(n * self._each(scale, p))


def perturbed_sgd(lr: float | Tensor, momentum: float | Tensor, threshold: float | Tensor, radius: float | Tensor,
                  wait: int, gen: torch.Generator, masks: list[Tensor] | None = None) -> Callable[..., PerturbedSGD]:
    """A factory `(params, rows=slice(None)) -> PerturbedSGD`, as `engine.make_optimizer` gives; lr, momentum,
    threshold and radius may hold one value per round, `masks` (`trained_masks` of the whole stack) are cut to `rows` too."""
    return lambda params, rows=slice(None): PerturbedSGD(
        params, _rows(lr, rows), _rows(momentum, rows), _rows(threshold, rows), _rows(radius, rows), wait, gen,
        None if masks is None else [m[rows] for m in masks])


# ----------------------------------------------------------------------------- cost accounting

BACKWARD_PER_FORWARD = 2      # convention: a backward pass costs two forward passes (input and weight gradients)


def cnn_forward_macs(n_filters: int, seq_len: int = PROTOCOL_PATTERN.seq_len, kernel: int = PROTOCOL_PATTERN.size
                     ) -> int:
    """Multiply-adds of one NaiveCNN(n) forward pass on one sequence: the convolution n * K * (L - K + 1), the
    decision n (the max over positions and the bias are not multiply-adds)."""
    return n_filters * kernel * (seq_len - kernel + 1) + n_filters


def forward_macs(template: nn.Module, x: Tensor) -> int:
    """Multiply-adds of one forward pass of the template on one example, counted at its Linear and Conv layers
    (a weight entry times each output position it makes); x: a batch of examples as `template` takes it, its
    first dim the batch. Biases, activations and pooling are not multiply-adds."""
    total = 0

    def count(module: nn.Module, inputs, output: Tensor) -> None:
        nonlocal total
        positions = output[0, 0].numel() if isinstance(module, nn.modules.conv._ConvNd) else 1
        total += module.weight.numel() * positions * len(output)
    layers = [m for m in template.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    hooks = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad():
            template(x)
    finally:
        for h in hooks:
            h.remove()
    return total // len(x)


def bool_forward_macs(width: int) -> int:
    """Multiply-adds of one NaiveBoolNet(w) forward pass on one point: hidden 2w, output w."""
    return 2 * width + width


def evaluation_macs(forward_macs: int, batch: int) -> int:
    """One fitness evaluation of one candidate: a forward pass per example of its batch."""
    return forward_macs * batch


def gradient_step_macs(forward_macs: int, batch: int) -> int:
    """One gradient step of one network: forward and backward over its batch."""
    return (1 + BACKWARD_PER_FORWARD) * forward_macs * batch


def generation_macs(forward_macs: int, batch: int, candidates: int, sgd_steps: int = 0) -> int:
    """One generation of a (memetic) explorer, per round: every candidate takes `sgd_steps` gradient steps and
    one fitness evaluation, each on a batch of `batch` examples."""
    return candidates * (sgd_steps * gradient_step_macs(forward_macs, batch) + evaluation_macs(forward_macs, batch))
