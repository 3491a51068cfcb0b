"""Train and evaluate many small networks at once. Knows nothing about either experiment.

A `Stack` holds R networks ("rounds") of one class, possibly of several sizes (one group per
sweep point), with every parameter stacked along a leading round dim and zero-padded to the
largest size. A mask keeps padded and frozen entries out of training: their gradient is zeroed,
so with no weight decay no optimizer ever moves them.

A network class may bring a hand-written `stacked_forward(params, *inputs)` that runs the whole
padded stack in a few tensor ops (it must let a zero-padded unit change nothing downstream); any
other class runs through `torch.func.vmap` of its plain `forward`, one group at a time, so a new
model needs no extra code. The tests check every hand-written one against that vmap path. When
padding to the largest size would more than double the work (networks of 1 to 64 filters, say),
training runs each group at its own size instead, so no round pays the largest network's cost.
Rounds can be taken out of a stack and trained as a stack of their own (`Stack.take` / `Stack.put`): in
blocks, so that data drawn for a whole training run stays within a fixed memory budget whatever the number
of rounds, or a chosen few (the rounds a stopping rule lets go on).

One optimizer steps all rounds together: the update rules of torch.optim's SGD, Adam, RMSprop and
Adagrad act elementwise, so every round follows exactly the trajectory it would follow alone; the
oracle tests check this against a plain one-model torch.optim loop.
"""
import bisect
import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[tuple[Tensor, ...], Tensor]      # (the networks' inputs, targets)
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")


@dataclass
class Group:
    """Rounds [start, stop) of a stack, all of `template`'s class and size."""
    template: nn.Module
    start: int
    stop: int


@dataclass
class Stack:
    params: dict[str, Tensor]       # (R, *padded shape)
    masks: dict[str, Tensor]        # (R, *padded shape): 1.0 where the entry is trained
    groups: list[Group]
    padded: bool = False            # train as one padded stack however much padding (see `per_group`)

    @property
    def networks(self) -> int:
        """How many networks (rows) the stack holds: all its groups' rounds (a study's `rounds` setting is
        the rounds of one sweep point)."""
        return self.groups[-1].stop

    def group_params(self, group: Group, start: int = 0, stop: int | None = None,
                     params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The parameters of rounds [start, stop) of a group, cut back to the group's own shapes
        (from `params`, stacked as the stack's own, if given)."""
        params = self.params if params is None else params
        stop = group.stop - group.start if stop is None else stop
        rows = slice(group.start + start, group.start + stop)
        return {name: params[name][(rows, *(slice(0, n) for n in p.shape))]
                for name, p in group.template.named_parameters()}

    def take(self, rows: range | list[int]) -> "Stack":
        """The given rounds (ascending) as a stack of their own, each in its group (a copy; `put` writes it
        back). A range of rounds is cut as a slice, any other list as an index."""
        groups, start = [], 0
        for g in self.groups:
            n = bisect.bisect_left(rows, g.stop) - bisect.bisect_left(rows, g.start)
            if n:
                groups.append(Group(g.template, start, start + n))
                start += n
        index = self._index(rows)
        return Stack({k: v[index].clone() for k, v in self.params.items()},
                     {k: v[index] for k, v in self.masks.items()}, groups)

    def put(self, part: "Stack", rows: range | list[int]) -> None:
        """Write back the parameters of the rounds taken by `take(rows)`."""
        index = self._index(rows)
        with torch.no_grad():
            for k, v in part.params.items():
                self.params[k][index] = v

    def _index(self, rows: range | list[int]) -> slice | Tensor:
        if isinstance(rows, range) and rows.step == 1:
            return slice(rows.start, rows.stop)
        return torch.tensor(list(rows), dtype=torch.long, device=next(iter(self.params.values())).device)

    def module(self, r: int) -> nn.Module:
        """Round r as a module of its own: a copy of its template holding round r's parameters."""
        group = next(g for g in self.groups if g.start <= r < g.stop)
        module = copy.deepcopy(group.template)
        values = self.group_params(group, r - group.start, r - group.start + 1)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(values[name][0])
        return module


    def per_round(self, values: float | list[float]) -> float | Tensor:
        """A hyperparameter as the optimizer takes it: one value for all rounds stays a float; a list of one
        value per group becomes a tensor of one value per round."""
        if not isinstance(values, (list, tuple)):
            return values
        device = next(iter(self.params.values())).device
        sizes = torch.tensor([g.stop - g.start for g in self.groups], device=device)
        return torch.tensor(values, dtype=torch.float32, device=device).repeat_interleave(sizes)


def frozen_stack(template: nn.Module, params: dict[str, Tensor]) -> Stack:
    """A stack of given networks of the template's class and size (to evaluate, not to train)."""
    rounds = len(next(iter(params.values())))
    return Stack(params, {name: torch.zeros_like(p) for name, p in params.items()}, [Group(template, 0, rounds)])


def default_init_bound(module: nn.Module) -> float | None:
    """PyTorch's default init of Linear/Conv draws weight and bias from U(-b, b), b = 1/sqrt(fan_in)."""
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return module.weight[0].numel() ** -0.5
    return None


def _fresh(template: nn.Module, rounds: int, gen: torch.Generator) -> dict[str, Tensor]:
    """`rounds` independent default inits of the template's parameters, stacked.

    Parameters of Linear and Conv layers are drawn as PyTorch's own init draws them; any other
    parameter is deterministic at init (a zero bias, say) and is copied from the template.
    """
    out = {}
    for prefix, module in template.named_modules():
        bound = default_init_bound(module)
        for name, p in module.named_parameters(recurse=False):
            key = f"{prefix}.{name}" if prefix else name
            if bound is None:
                out[key] = p.detach().to(gen.device).expand(rounds, *p.shape).clone()
            else:
                u = torch.rand(rounds, *p.shape, generator=gen, device=gen.device)
                out[key] = (2 * u - 1) * bound
    return out


def options_of(module: nn.Module) -> dict:
    """A module's own settings beyond its parameters and layers (a pooling rule, a temperature, ...)."""
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}


def init_stack(templates: list[nn.Module], rounds: int, gen: torch.Generator) -> Stack:
    """`rounds` freshly initialised networks per template, one group per template, in order."""
    if len({type(t) for t in templates}) != 1:
        raise ValueError("a stack holds networks of one class")
    if any(options_of(t) != options_of(templates[0]) for t in templates):
        raise ValueError("a stack holds networks of one class and one setting: "
                         + " vs ".join(sorted({repr(options_of(t)) for t in templates})))
    return assemble(templates, rounds, [_fresh(t, rounds, gen) for t in templates], gen.device)


def trainable_stack(template: nn.Module, params: dict[str, Tensor]) -> Stack:
    """A trainable stack of the template's class and size starting from given weights (R, ...) each,
    trained where the template's parameters require it."""
    rounds = len(next(iter(params.values())))
    return assemble([template], rounds, [{k: v.detach().clone() for k, v in params.items()}], next(iter(params.values())).device)


def assemble(templates: list[nn.Module], rounds: int, values: list[dict[str, Tensor]], device: torch.device) -> Stack:
    """One group of `rounds` rounds per template, holding `values`, padded to the largest size."""
    params, masks, groups = {}, {}, []
    for name, p in templates[0].named_parameters():
        shape = [max(dict(t.named_parameters())[name].shape[i] for t in templates) for i in range(p.dim())]
        params[name] = torch.zeros(len(templates) * rounds, *shape, device=device)
        masks[name] = torch.zeros_like(params[name])
    for i, (template, value) in enumerate(zip(templates, values)):
        rows = slice(i * rounds, (i + 1) * rounds)
        for name, p in template.named_parameters():
            region = (rows, *(slice(0, n) for n in p.shape))
            params[name][region] = value[name]
            masks[name][region] = float(p.requires_grad)
        groups.append(Group(template.to(device), rows.start, rows.stop))
    return Stack(params, masks, groups)


class Optimizer:
    """The update rule of torch.optim's `name` (its defaults otherwise), on a list of stacked tensors.

    Every rule is elementwise, so one instance steps all rounds as if each had its own optimizer.
    The rules are written out rather than taken from torch.optim because a torch.optim step first
    imports torch._dynamo, which costs about 2 s of a 10 s run; the oracle tests check each rule
    against torch.optim itself.
    """

    def __init__(self, params: list[Tensor], name: str, lr: float | Tensor, momentum: float | Tensor = 0.0) -> None:
        """`lr` and `momentum`: one value for every round, or a tensor of one value per round."""
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}")
        self.params, self.lr, self.momentum = params, lr, momentum
        self._rule = getattr(self, f"_{name}")
        self.state: list[dict[str, Tensor]] = [{} for _ in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for p, state in zip(self.params, self.state):
            self._rule(p, p.grad, state)

    @staticmethod
    def _each(value: float | Tensor, p: Tensor) -> float | Tensor:
        """A hyperparameter as it broadcasts against a stacked tensor p (R, ...)."""
        return value.view(-1, *([1] * (p.dim() - 1))) if isinstance(value, Tensor) else value

    @staticmethod
    def _descend(p: Tensor, direction: Tensor, scale: float | Tensor, denom: Tensor | None = None) -> None:
        """p -= scale * direction (/ denom); with one scale per round when `scale` is a tensor."""
        if isinstance(scale, Tensor):
            step = direction if denom is None else direction / denom
            p.sub_(step * scale.view(-1, *([1] * (p.dim() - 1))))
        elif denom is None:
            p.add_(direction, alpha=-scale)
        else:
            p.addcdiv_(direction, denom, value=-scale)

    def _uses_momentum(self) -> bool:
        return bool((self.momentum != 0).any()) if isinstance(self.momentum, Tensor) else self.momentum > 0

    def _sgd(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> None:
        if self._uses_momentum():
            if "buf" in state:
                g = state["buf"].mul_(self._each(self.momentum, p)).add_(g)
            else:
                g = state["buf"] = g.clone()
        self._descend(p, g, self.lr)

    def _adam(self, p: Tensor, g: Tensor, state: dict[str, Tensor], betas=(0.9, 0.999), eps=1e-8) -> None:
        m = state.setdefault("m", torch.zeros_like(p)).lerp_(g, 1 - betas[0])
        v = state.setdefault("v", torch.zeros_like(p)).mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
        step_size = self.lr / (1 - betas[0] ** self.t)
        denom = (v.sqrt() / math.sqrt(1 - betas[1] ** self.t)).add_(eps)
        self._descend(p, m, step_size, denom)

    def _rmsprop(self, p: Tensor, g: Tensor, state: dict[str, Tensor], alpha=0.99, eps=1e-8) -> None:
        square_avg = state.setdefault("square_avg", torch.zeros_like(p)).mul_(alpha).addcmul_(g, g, value=1 - alpha)
        avg = square_avg.sqrt().add_(eps)
        if self._uses_momentum():
            buf = state.setdefault("buf", torch.zeros_like(p)).mul_(self._each(self.momentum, p)).addcdiv_(g, avg)
            self._descend(p, buf, self.lr)
        else:
            self._descend(p, g, self.lr, avg)

    def _adagrad(self, p: Tensor, g: Tensor, state: dict[str, Tensor], eps=1e-10) -> None:
        total = state.setdefault("sum", torch.zeros_like(p)).addcmul_(g, g, value=1)
        self._descend(p, g, self.lr, total.sqrt().add_(eps))


def make_optimizer(name: str, lr: float | Tensor, momentum: float | Tensor) -> Callable[..., Optimizer]:
    """A factory `(params, rows=slice(None)) -> Optimizer` of the named optimizer; `momentum` applies to
    sgd and rmsprop. Either may be a tensor of one value per round of the stack; `rows` picks the
    values of a block of rounds trained on its own."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    cut = lambda v, rows: v[rows] if isinstance(v, Tensor) else v
    return lambda params, rows=slice(None): Optimizer(params, name, cut(lr, rows), cut(momentum, rows))


def vmap_forward(group: Group, params: dict[str, Tensor], inputs: tuple[Tensor, ...], shared: bool = False) -> Tensor:
    """Logits (R, B) of a group's R networks through `torch.func.vmap` of the template's plain `forward`.

    `params` are the group's own (unpadded) stacked parameters. Every input has a leading round dim,
    but with `shared` the first (x) is one batch for every round.
    """
    from torch.func import functional_call, vmap
    call = lambda p, *xs: functional_call(group.template, p, xs)[..., 0]
    return vmap(call, in_dims=(0, None if shared else 0, *[0] * (len(inputs) - 1)))(params, *inputs)


def padding_waste(stack: Stack) -> float:
    """The work of the padded stack over the work of every group at its own size (parameters x rounds)."""
    own = sum((g.stop - g.start) * sum(p.numel() for p in g.template.parameters()) for g in stack.groups)
    padded = sum(p[0].numel() for p in stack.params.values()) * stack.networks
    return padded / own


def per_group(stack: Stack) -> bool:
    """Whether training runs group by group: no hand-written `stacked_forward`, or too much padding, unless the
    stack says `padded` (a stack of a few rounds: one call per group then costs more than the padding)."""
    return not hasattr(stack.groups[0].template, "stacked_forward") or (not stack.padded and padding_waste(stack) > 2)


def forward_of(stack: Stack) -> Callable[..., Tensor]:
    """`forward(params, *inputs) -> logits (R, B)` for the whole stack: the class's own `stacked_forward`
    on the padded stack, or group by group at each group's own size when padding would more than double
    the work; `vmap_forward` group by group for a class without one."""
    template = stack.groups[0].template
    if not per_group(stack):
        return template.stacked_forward

    def forward(params: dict[str, Tensor], *inputs: Tensor) -> Tensor:
        outs = []
        for g in stack.groups:
            own, xs = stack.group_params(g, params=params), tuple(x[g.start:g.stop] for x in inputs)
            outs.append(g.template.stacked_forward(own, *xs) if hasattr(template, "stacked_forward")
                        else vmap_forward(g, own, xs))
        return torch.cat(outs)
    return forward


def train(stack: Stack, batch: Callable[[int], Batch], steps: int, optimizer: Callable[..., Optimizer],
          lengths: Tensor | None = None, on_step: Callable[[], object] | None = None, rows: slice = slice(None)) -> None:
    """Train every round of the stack in place with binary cross-entropy on logits.

    `batch(step)` gives (inputs, y), each tensor with a leading round dim. Round r takes steps
    0 .. lengths[r] - 1 and then stays untouched (default: all `steps`); since a finished round
    never trains again, its optimizer state after that does not matter. A network that `anneals` (a
    surrogate whose temperature follows training) is told by `set_progress` before every step how far
    each round is through its own training: a tensor (R,) that is 0 at a round's first step and 1 at its last.
    `rows` says which rounds of the optimizer's per-round values this stack holds (a block of rounds).
    """
    names = [n for n, m in stack.masks.items() if m.any()]
    params = [stack.params[n].requires_grad_() for n in names]
    masked = [(p, stack.masks[n]) for p, n in zip(params, names) if not stack.masks[n].all()]
    opt = optimizer(params, rows)
    if lengths is not None:
        steps = min(steps, int(lengths.max()))
    for group in stack.groups:
        group.template.train()
    forward = forward_of(stack)
    last = (torch.full((stack.networks,), steps) if lengths is None else lengths).to(stack.params[names[0]].device) - 1
    annealed, grouped = getattr(stack.groups[0].template, "anneals", False), per_group(stack)
    for step in range(steps):
        if annealed:
            progress = (step / last.clamp(min=1)).clamp(max=1.0)
            for g in stack.groups:              # each group's own rounds, or the whole padded stack's
                g.template.set_progress(progress[g.start:g.stop] if grouped else progress)
        inputs, y = batch(step)
        logits = forward(stack.params, *inputs)
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1).sum()
        opt.zero_grad()
        loss.backward()
        for p, mask in masked:
            p.grad.mul_(mask)
        finished = None if lengths is None else lengths <= step
        if finished is not None and finished.any():
            before = [p.detach().clone() for p in params]
            opt.step()
            with torch.no_grad():
                for p, old in zip(params, before):
                    keep = finished.view(-1, *([1] * (p.dim() - 1)))
                    p.copy_(torch.where(keep, old, p))
        else:
            opt.step()
        if on_step is not None:
            on_step()
    for p in params:
        p.requires_grad_(False)


@dataclass
class Scorer:
    """What a stack is scored on: `data(start, stop)` gives (inputs, y) for rounds [start, stop) (with
    `shared`, one batch for every round), and the metric."""
    data: Callable[[int, int], Batch]
    metric: Callable[[Tensor, Tensor], Tensor]
    shared: bool = False
    chunk: int = 256                # rounds scored at once (smaller when every round brings its own data)

    def __call__(self, stack: Stack) -> tuple[Tensor, Tensor]:
        """The scores (R,) and which rounds diverged (R,)."""
        return evaluate(stack, self.data, self.metric, self.shared, self.chunk)


@torch.no_grad()
def logits(stack: Stack, group: Group, inputs: tuple[Tensor, ...], shared: bool = False,
           start: int = 0, stop: int | None = None) -> Tensor:
    """Logits (R, B) of rounds [start, stop) of a group, in eval mode, at the group's own size."""
    template = group.template.eval()
    params = stack.group_params(group, start, stop)
    if hasattr(template, "stacked_forward"):
        return template.stacked_forward(params, *inputs)
    return vmap_forward(group, params, inputs, shared)


@torch.no_grad()
def evaluate(stack: Stack, data: Callable[[int, int], Batch], score: Callable[[Tensor, Tensor], Tensor],
             shared: bool = False, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Score every round; `data(start, stop)` gives (inputs, y) for rounds [start, stop).

    The inputs are one batch per round, or with `shared` one batch for every round (no round dim).
    Each group runs at its own size (no padding) and at most `chunk` rounds at a time, so memory
    stays bounded. Returns the scores (R,) and which rounds diverged (R,): a round whose parameters
    or logits are not all finite; its non-finite logits count as wrong answers.
    """
    device = stack.params[next(iter(stack.params))].device
    scores = torch.empty(stack.networks, device=device)
    diverged = torch.empty(stack.networks, dtype=torch.bool, device=device)
    longest = max(g.stop - g.start for g in stack.groups)

    def judge(parts: list[tuple[Group, int, int]], inputs: tuple[Tensor, ...], y: Tensor) -> None:
        """Score groups' rows that meet the same inputs: together where the class can (one pass over
        the data for all of them), else one by one."""
        template = parts[0][0].template
        if len(parts) > 1 and hasattr(template, "stacked_forward_together"):
            outs = template.stacked_forward_together(
                [stack.group_params(g, a - g.start, b - g.start) for g, a, b in parts], *inputs)
        else:
            outs = [logits(stack, g, inputs, shared, a - g.start, b - g.start) for g, a, b in parts]
        for (g, a, b), out in zip(parts, outs):
            scores[a:b], diverged[a:b] = verdict(out, y, score, stack.group_params(g, a - g.start, b - g.start))

    for offset in range(0, longest, chunk):          # chunk by chunk across groups: groups of the same rounds
        pending: list[tuple[Group, int, int]] = []   # ask for the same data one after another, and the groups
        batch: Batch | None = None                   # given the very same tensors are scored together
        for group in stack.groups:
            start = group.start + offset
            if start >= group.stop:
                continue
            stop = min(start + chunk, group.stop)
            inputs, y = data(start, stop)
            same = batch is not None and not shared and inputs[0] is batch[0][0] and y is batch[1] \
                and stop - start == pending[0][2] - pending[0][1] and type(group.template) is type(pending[0][0].template)
            if pending and not same:
                judge(pending, *batch)
                pending = []
            pending.append((group, start, stop))
            batch = inputs, y
        if pending:
            judge(pending, *batch)
    return scores, diverged


def verdict(logits: Tensor, y: Tensor, score: Callable[[Tensor, Tensor], Tensor], params: dict[str, Tensor]
            ) -> tuple[Tensor, Tensor]:
    """The scores of networks' logits (R, B) against y, and which of them diverged: parameters (`params`, each
    (R, ...)) or logits not all finite."""
    finite = torch.isfinite(logits).all(-1)
    for p in params.values():
        finite &= torch.isfinite(p).flatten(1).all(1)
    return score(logits, y), ~finite


def _predictions(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Decisions `logit > 0` and truths; a non-finite logit is always a wrong answer."""
    truth = (y > 0.5).expand_as(logits)
    pred = torch.where(torch.isfinite(logits), logits > 0, ~truth)
    return pred, truth


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Share of correct decisions per round: logits (R, N), y (N,) or (R, N) -> (R,)."""
    pred, truth = _predictions(logits, y)
    return (pred == truth).float().mean(-1)


def macro_f1(logits: Tensor, y: Tensor) -> Tensor:
    """Mean of the F1 of class 1 and of class 0, per round (an F1 with nothing to count is 0)."""
    pred, truth = _predictions(logits, y)
    tp = (pred & truth).sum(-1).float()
    tn = (~pred & ~truth).sum(-1).float()
    wrong = (pred != truth).sum(-1).float()
    f1 = lambda hits: torch.where(2 * hits + wrong > 0, 2 * hits / (2 * hits + wrong).clamp(min=1), 0.0)
    return (f1(tp) + f1(tn)) / 2
