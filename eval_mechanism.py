"""Why does width help? Winning tickets and exploration at initialization, on the faithful protocol.

Two published explanations make testable predictions on these networks:
  - winning tickets (Frankle & Carbin, ICLR 2019): a wide network succeeds because it holds a small
    sub-network whose initial weights train well; rewound to those weights and trained alone, it succeeds;
  - exploration at initialization (Brutzkus & Globerson, ICML 2019): in a max-pooling CNN detecting a
    pattern, some filters are already aligned with it at init, and training concentrates on them.
For every trained Naive network of the sweep, from the smallest size that solves the task (SMALL: 1 filter,
width 2) up: the sub-network of SMALL units it relies on most (its "ticket"), scored alone; rewound to its
initial weights and trained alone on fresh batches, against SMALL random units of the same network rewound
alike (the control of the original paper), the wide network itself and a fresh small network. What a unit
is and how it is ranked is each experiment's own (an "anatomy", chosen by the experiment's NAME):
  experiment 1: a unit is a filter; alone, it is max-pooled and thresholded (threshold and sign fitted on
    the selection set); ranked by that accuracy on the selection set. Measured per network: `alone` (its
    best-ranked filter alone, on the validation sets), `detectors` (filters that solve alone at the run's
    --solved-at) and `cosine` (the best cosine of its initial filters with the pattern's kernel). Its own
    arms: an init-only search (of n fresh Naive(1), keep the one whose initial filter alone is best on
    the selection set, before any training, and train only it) against the best of n trained Naive(1)
    chosen after training (selection score);
  experiment 2: a unit is a hidden unit; the two of largest |output weight| x |input weights| (the size of
    their effect on the output: weights only, no data) form the width-2 sub-network, with the output bias;
    measured per network: `alone` (that pair alone, on the validation sets).
Every row is a trained network, scored on each round's own validation set (rounds are independent) with
its real `diverged` flag and the experiment's test-set measurements (TEST_COLUMNS). Every choice that looks
at data uses the selection set, never the validation set. Figure: anatomy, ticket test, performance profile
(and experiment 1's alignment, init-only and detector panels).
Writes mechanism_cnn and mechanism_bool (.png, .csv, .json).
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import functools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

import cli
import data
import engine
import eval_bool
import eval_cnn
import report
from models import NaiveCNN, pool_conv

EXPERIMENTS = {e.NAME: e for e in (eval_cnn, eval_bool)}
FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "min_width",
         "max_width"]
WIDE, TICKET, CONTROL = "wide network", "ticket: best unit rewound and retrained", "control: random unit rewound and retrained"
INIT_CHOICE, RESTARTS = "init-only choice of n Naive(1)", "best of n trained Naive(1)"
CHUNK = 32                          # rounds whose sets the filter-alone measurements pool at once
ALONE = report.Column("alone", float, key=False, low=0, high=1)
DETECTORS = report.Column("detectors", int, key=False, low=0)
COSINE = report.Column("cosine", float, key=False, low=-1, high=1)


def experiment_of(s: cli.Settings) -> ModuleType:
    """The experiment whose settings these are."""
    return next(e for e in EXPERIMENTS.values() if isinstance(s, e.Settings))


# ----------------------------------------------------------------------------- the study's own settings

@dataclasses.dataclass(frozen=True, kw_only=True)
class Mechanism(cli.StudySettings):
    """The study's own settings for one experiment, kept beside the experiment's."""

    def check_with(self, base: cli.Settings) -> "Mechanism":
        """A sub-network of the smallest solving size needs a wider network in the sweep."""
        super().check_with(base)
        e = experiment_of(base)
        if max(base.sizes()) <= e.SMALL:
            raise cli.UsageError(f"{cli.flag('max_' + e.SIZE)} must be at least {e.SMALL + 1}: a sub-network of "
                                 f"the smallest solving size ({e.SIZE} {e.SMALL}) needs a wider network")
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class FilterChoice(Mechanism):
    """Experiment 1: the selection set that fits each filter's threshold and makes every choice."""
    selection: int = cli.setting("selection set of experiment 1: pairs of sequences per round", cli.within(1, 100_000),
                                 "in [1, 100000]", default=1000)

    def memory_bytes(self, base: eval_cnn.Settings) -> int:
        """Besides the experiment's: every round's selection and validation sequences, held, and a chunk of
        rounds' correlations of their sequences with every filter at every position."""
        held_sets = base.rounds * 2 * (self.selection + eval_cnn.VALIDATION_PAIRS) * base.seq_len * 4
        pairs = max(self.selection, eval_cnn.VALIDATION_PAIRS)
        return base.memory_bytes() + held_sets + CHUNK * 2 * pairs * base.seq_len * (1 + base.max_filters) * 4 * 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairChoice(Mechanism):
    """Experiment 2 chooses by weights alone: no setting of its own."""


# ----------------------------------------------------------------------------- units: rank, extract, rewind

def top(rank: Tensor, k: int) -> Tensor:
    """The k units of highest rank per row (R, units) -> (R, k); ties go to the first."""
    return rank.argsort(dim=1, descending=True, stable=True)[:, :k]


def keep_units(params: dict[str, Tensor], units: Tensor, axes: dict[str, int]) -> dict[str, Tensor]:
    """The parameters of the sub-networks made of the units `units` (R, k) of each row: every parameter
    cut along its units' axis (`axes`); a parameter without one (an output bias) is kept whole."""
    out = {}
    for name, p in params.items():
        if name not in axes:
            out[name] = p
            continue
        shape = [len(units)] + [1] * (p.dim() - 1)
        shape[axes[name]] = units.shape[1]
        out[name] = p.take_along_dim(units.view(shape), dim=axes[name])
    return out


def stack_of(template: torch.nn.Module, values: list[dict[str, Tensor]]) -> engine.Stack:
    """A trainable stack of the template's size, one group per entry of `values` (each the same rounds)."""
    rounds = len(next(iter(values[0].values())))
    return engine.assemble([template] * len(values), rounds, values, next(iter(values[0].values())).device)


def held(scorer: engine.Scorer, rounds: int) -> engine.Scorer:
    """The same scorer with each of `rounds` rounds' data drawn once and held, not drawn again for every
    stack and group that meets it (row i of a stack is round i % rounds); labels of shape (N,) are every
    round's, of shape (rounds, N) each round's own."""
    (x,), y = scorer.data(0, rounds)

    def cut(start: int, stop: int) -> engine.Batch:
        first = start % rounds
        rows = slice(first, first + stop - start) if first + stop - start <= rounds else \
            torch.arange(start, stop, device=x.device) % rounds
        return (x[rows],), (y if y.dim() == 1 else y[rows])
    return engine.Scorer(data.last_chunk_held(rounds, cut), scorer.metric, scorer.shared)


def fitted(e: ModuleType, s: cli.Settings, gen: torch.Generator, stack: engine.Stack, bar) -> dict[str, Tensor]:
    """Train a stack in place as the experiment does; returns its initial parameters."""
    start = {k: v.clone() for k, v in stack.params.items()}
    e.fit(s, gen, stack, bar)
    return start


# ----------------------------------------------------------------------------- experiment 1's units: filters

def by_argsort(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Each row of values (P, B) sorted by `argsort`, and the labels (P, B) in the same order (as floats)."""
    order = values.argsort(-1)
    return values.gather(-1, order), labels.gather(-1, order).float()


FLIP = np.int32(0x7FFFFFFF)


def ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 bits as int32 ordered as the floats (-0.0 just below 0.0, NaN outside), and back: negatives
    have all but the sign bit flipped."""
    return x ^ ((x >> 31) & FLIP)


def sorted_rows(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """`by_argsort` for labels 0 or 1, exactly, twice as fast on the CPU: numpy sorts 64-bit keys made of
    each value's ordered bits (high half) and its label (low half). A row sorts one way only unless it holds
    NaN or equal values of different labels or bits (-0.0, 0.0): such rows (few) go to `by_argsort`."""
    if values.device.type != "cpu":
        return by_argsort(values, labels)
    halves = np.empty((*values.shape, 2), np.int32)                 # little-endian int64: (low, high)
    halves[..., 0] = labels.numpy()
    halves[..., 1] = ordered_bits(values.numpy().view(np.int32))
    keys = halves.view(np.int64)[..., 0]
    keys.sort(axis=-1)
    sorted_values = torch.from_numpy(ordered_bits(halves[..., 1]).view(np.float32))
    sorted_labels = torch.from_numpy(halves[..., 0].astype(np.float32))
    tied = (sorted_values[:, 1:] == sorted_values[:, :-1]) & torch.from_numpy(keys[:, 1:] != keys[:, :-1])
    unsure = tied.any(-1) | sorted_values.isnan().any(-1)
    if unsure.any():
        sorted_values[unsure], sorted_labels[unsure] = by_argsort(values[unsure], labels[unsure])
    return sorted_values, sorted_labels


def fit_thresholds(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per row of values (P, B) scored against labels (B,) or (P, B): the threshold and direction (+1:
    positive above it, -1: below) of best accuracy; ties go to the first in sorted order."""
    sorted_values, sorted_labels = sorted_rows(values, labels.expand_as(values))
    zero = torch.zeros_like(sorted_labels[:, :1])
    negatives_below = torch.cat([zero, (1 - sorted_labels).cumsum(-1)], -1)            # (P, B + 1)
    positives_above = sorted_labels.sum(-1, keepdim=True) - torch.cat([zero, sorted_labels.cumsum(-1)], -1)
    above = negatives_below + positives_above                       # correct when positive means above
    below = values.shape[-1] - above
    best_above, at_above = above.max(-1)
    best_below, at_below = below.max(-1)
    direction = torch.where(best_above >= best_below, 1.0, -1.0)
    at = torch.where(direction > 0, at_above, at_below)
    inf = torch.full_like(sorted_values[:, :1], float("inf"))
    edges = torch.cat([-inf, sorted_values, inf], -1)
    threshold = (edges.gather(-1, at[:, None])[:, 0] + edges.gather(-1, at[:, None] + 1)[:, 0]) / 2
    return torch.nan_to_num(threshold, nan=0.0), direction          # (-inf + x) / 2 stays -inf; inf - inf: none


def accuracy_of(values: Tensor, labels: Tensor, threshold: Tensor, direction: Tensor) -> Tensor:
    """Accuracy of `direction * (value - threshold) > 0` per row of values (P, B)."""
    return ((direction[:, None] * (values - threshold[:, None]) > 0).float() == labels).float().mean(-1)


def responses(w: Tensor, batch: engine.Batch) -> Tensor:
    """Each filter of w (R, F, K), max-pooled over the sequences of a batch ((x,), y), x (R, B, 1, L) or
    shared (B, 1, L): (R, B, F)."""
    with torch.no_grad():
        return pool_conv(batch[0][0].squeeze(-2), w)


def flat(values: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Responses (R, B, F) to a set labelled y (B,) or (R, B) as rows of one filter each: (R*F, B) and their labels."""
    r, _, f = values.shape
    return values.permute(0, 2, 1).flatten(0, 1), y.expand(r, -1)[:, None].expand(-1, f, -1).flatten(0, 1)


def accuracies_alone(fit: tuple[Tensor, Tensor], *scored: tuple[Tensor, Tensor]) -> list[Tensor]:
    """Each filter alone, from its max-pooled responses (R, B, F) to sets labelled y (B,) or (R, B), given as
    (responses, y), with a threshold and sign fitted on `fit`: its accuracy on `fit` and on each of `scored`,
    each (R, F)."""
    values, labels = flat(*fit)
    threshold, direction = fit_thresholds(values, labels)
    r, _, f = fit[0].shape
    return [accuracy_of(v, y, threshold, direction).view(r, f)
            for v, y in [(values, labels), *(flat(*s) for s in scored)]]


def filters_alone(w: Tensor, fit: engine.Batch, *scored: engine.Batch) -> list[Tensor]:
    """Each filter of w (R, F, K) alone, max-pooled, with a threshold and sign fitted on the batch `fit`:
    its accuracy on `fit` and on each batch of `scored`, each (R, F)."""
    return accuracies_alone(*((responses(w, batch), batch[1]) for batch in (fit, *scored)))


def cosine(w: Tensor, kernel: Tensor) -> Tensor:
    """Cosine of each filter of w (R, F, K) with the kernel (K,) -> (R, F)."""
    return torch.nn.functional.cosine_similarity(w, kernel.expand_as(w), dim=-1).clamp(-1.0, 1.0)


def filters(params: dict[str, Tensor]) -> Tensor:
    """The filters (R, F, K) of stacked NaiveCNN parameters."""
    return params["conv.weight"].flatten(1, 2)


# ----------------------------------------------------------------------------- experiment 2's units: hidden units

def reliance(params: dict[str, Tensor]) -> Tensor:
    """How much a NaiveBoolNet relies on each hidden unit, from weights alone: |output weight| x |input
    weights|, a bound on how far the unit moves the logit per unit of input. (R, width)."""
    return params["output.weight"][:, 0].abs() * params["hidden.weight"].norm(dim=-1)


# ----------------------------------------------------------------------------- the results, grouped

@dataclasses.dataclass
class Results:
    """A run's rows as the notes and the figure read them (`report.by_model` is the one grouping)."""
    rows: list[report.Row]
    solved_at: float
    e: ModuleType
    columns: dict[tuple[str, str], dict[int, np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)

    @functools.cached_property
    def grouped(self) -> dict[str, dict[int, np.ndarray]]:
        """Every model's scores per sweep value, grouped once (the notes and panels ask hundreds of times)."""
        return report.by_model(self.rows)

    def scores(self, model: str) -> dict[int, np.ndarray]:
        return self.grouped.get(model, {})

    def column(self, model: str, name: str) -> dict[int, np.ndarray]:
        """A measurement column of a model's rows per sweep value, in round order (each gathered once)."""
        if (model, name) not in self.columns:
            rows = [dataclasses.replace(r, score=r.get(name)) for r in self.rows if r.model == model]
            self.columns[model, name] = report.by_model(rows).get(model, {})
        return self.columns[model, name]

    def solved(self, model: str) -> dict[int, np.ndarray]:
        return {n: v >= self.solved_at for n, v in self.scores(model).items()}

    def holds(self) -> dict[int, np.ndarray]:
        """Which wide networks hold a sub-network that solves alone (their anatomy says how to tell)."""
        return ANATOMIES[self.e.NAME].holds(self)


def percent(hits: np.ndarray) -> str:
    """A share in % with its 95 % Wilson interval."""
    lo, hi = report.wilson_ci(int(hits.sum()), len(hits))
    return f"{100 * hits.mean():.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def mean_ci(values: np.ndarray, digits: int = 2) -> str:
    lo, hi = report.bootstrap_mean_ci(values)
    return f"{values.mean():.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


# ----------------------------------------------------------------------------- figure panels (shared)

def share_line(ax, shares: dict[int, np.ndarray], label: str, **style) -> None:
    """The share of rounds that are True against the sweep value, with its 95 % Wilson band."""
    if not shares:
        return
    xs = list(shares)
    ci = np.array([report.wilson_ci(int(v.sum()), len(v)) for v in shares.values()]) * 100
    line, = ax.plot(xs, [100 * v.mean() for v in shares.values()], marker="o", label=label, **style)
    ax.fill_between(xs, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15)
    ax.set_xticks(xs)


def anatomy_panel(ax, r: Results) -> None:
    solved, holds = r.solved(WIDE), r.holds()
    share_line(ax, solved, "wide network solves")
    share_line(ax, holds, f"holds a sub-network ({r.e.SIZE} {r.e.SMALL}) that solves alone")
    share_line(ax, {n: solved[n] & holds[n] for n in solved}, "solves and holds one")
    ax.set(xlabel=r.e.SIZE, ylabel="rounds (%)", title="anatomy of the trained wide networks")


def ticket_panel(ax, r: Results) -> None:
    share_line(ax, r.solved(WIDE), "wide network")
    share_line(ax, r.solved(TICKET), "best units rewound, trained alone")
    share_line(ax, r.solved(CONTROL), "random units rewound, trained alone")
    fresh = r.solved(WIDE).get(r.e.SMALL)
    if fresh is not None:
        ax.axhline(100 * fresh.mean(), color="0.4", linestyle=":", label=f"fresh small network ({r.e.SIZE} {r.e.SMALL})")
    ax.set(xlabel=f"{r.e.SIZE} of the wide network", ylabel="solved (%)", title="the ticket test")


def profile_panel(ax, r: Results) -> None:
    """The share of rounds scoring at least t, for every t (a performance profile), per sweep value."""
    wide = r.scores(WIDE)
    low = max(0.0, np.floor(10 * min(v.min() for v in wide.values())) / 10)
    taus = np.linspace(low, 1.0, 301)
    for i, (n, scores) in enumerate(wide.items()):
        ax.plot(taus, [100 * (scores >= t).mean() for t in taus], color=f"C{i % 10}", label=f"{r.e.SIZE} {n}")
    ax.set(xlabel="score threshold t", ylabel="rounds scoring at least t (%)", title="performance profile")
    ax.legend(fontsize=7, ncol=2)


# ----------------------------------------------------------------------------- figure panels (experiment 1)

COSINE_EDGES = (-1.0, 0.6, 0.7, 0.8, 0.9, 1.0)
LEAST_IN_BIN = 10


def cosine_bins(cos: np.ndarray, solved: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The rounds by best initial cosine bin (COSINE_EDGES; bins of at least LEAST_IN_BIN rounds):
    (the bin, the cosines inside, whether those rounds solved)."""
    bins = np.clip(np.digitize(cos, COSINE_EDGES[1:-1]), 0, len(COSINE_EDGES) - 2)
    name = lambda b: f"[{COSINE_EDGES[b]:g}, {COSINE_EDGES[b + 1]:g}{']' if b == len(COSINE_EDGES) - 2 else ')'}"
    return [(name(b), cos[bins == b], solved[bins == b]) for b in range(len(COSINE_EDGES) - 1)
            if (bins == b).sum() >= LEAST_IN_BIN]


def alignment_panel(ax, r: Results) -> None:
    cosines, solved = r.column(WIDE, COSINE.name), r.solved(WIDE)
    for i, n in enumerate(solved):
        bins = cosine_bins(cosines[n], solved[n])
        ys = np.array([100 * inside.mean() for _, _, inside in bins])
        ci = np.array([report.wilson_ci(int(inside.sum()), len(inside)) for _, _, inside in bins]).reshape(-1, 2) * 100
        ax.errorbar([c.mean() for _, c, _ in bins], ys, yerr=[ys - ci[:, 0], ci[:, 1] - ys], marker="o", capsize=2,
                    color=f"C{i}", label=f"{r.e.SIZE} {n}")
    ax.set(xlabel=f"best cosine of an initial filter with the pattern's kernel (binned, >= {LEAST_IN_BIN} rounds a bin)",
           ylabel="solved (%)", title="exploration at initialization")


def init_panel(ax, r: Results) -> None:
    share_line(ax, r.solved(WIDE), "one Naive(n)")
    share_line(ax, r.solved(RESTARTS), "best of n trained Naive(1)")
    share_line(ax, r.solved(INIT_CHOICE), "best of n Naive(1) at init, trained alone")
    ax.set(xlabel="n", ylabel="solved (%)", title="choosing at init: no width, no retraining")


def detectors_panel(ax, r: Results) -> None:
    detectors, solved = r.column(WIDE, DETECTORS.name), r.solved(WIDE)
    sizes = list(detectors)
    means = np.array([detectors[n].mean() for n in sizes])
    cis = np.array([report.bootstrap_mean_ci(detectors[n]) for n in sizes])
    ax.errorbar(sizes, means, yerr=[means - cis[:, 0], cis[:, 1] - means], marker="o", capsize=3, label="all networks")
    ax.plot(sizes, [detectors[n][solved[n]].mean() if solved[n].any() else np.nan for n in sizes], marker="s",
            label="solved networks")
    ax.set(xlabel=r.e.SIZE, ylabel="filters that solve alone, per network", title="how many detectors")


# ----------------------------------------------------------------------------- anatomies

@dataclasses.dataclass
class Inspection:
    """What an anatomy reads of a stack: per group, the rank of each unit (R, units) (higher: relied on
    more); per row, its measurements; every network's score and divergence on its validation set, (R,)
    each as engine.Scorer gives them, and on its selection set where the anatomy scored them on the way."""
    ranks: list[Tensor]
    measured: list[tuple]
    validated: tuple[Tensor, Tensor]
    selected: tuple[Tensor, Tensor] | None = None


@dataclasses.dataclass
class OnSet:
    """A stack's filters alone and its networks on each round's own set of one kind: per group, each filter
    alone's accuracy (R, F); every network's score and divergence, (R,) each as engine.Scorer gives them."""
    alone: list[Tensor]
    scored: tuple[Tensor, Tensor]


class Anatomy:
    """What the study needs of one experiment's networks that the other's lack, chosen by the experiment's
    NAME (ANATOMIES), so that nothing branches on which experiment runs: where the hidden units sit in the
    parameters (`axes`), how the units are ranked and what is measured of a network (`inspect`), the
    study's own defaults, its arms, figure panels and note lines beyond the shared ones. An instance
    holds one run's data: each round's own validation set, the test set (and what the anatomy draws)."""
    experiment: ModuleType
    settings: Mechanism
    axes: dict[str, int]                 # parameter -> the axis of its hidden units
    columns: tuple[report.Column, ...] = (ALONE,)
    arms: tuple[str, ...] = ()           # model names of its own arms
    trainings: int = 0                   # training runs of its own arms
    panels: tuple = ()

    def __init__(self, s: cli.Settings, own: Mechanism, gen: torch.Generator) -> None:
        self.s, self.own, self.gen = s, own, gen
        self.validation = held(self.experiment.validation(s, gen, s.rounds), s.rounds)
        self.test = self.experiment.test_set(s, gen)

    def inspect(self, stack: engine.Stack, start: dict[str, Tensor]) -> Inspection:
        """What is read of a trained stack whose initial parameters were `start`."""
        raise NotImplementedError

    def own_arms(self, sizes: list[int], bar) -> list[report.Row]:
        return []

    @staticmethod
    def holds(r: Results) -> dict[int, np.ndarray]:
        """Which wide networks hold a sub-network that solves alone."""
        return {n: v >= r.solved_at for n, v in r.column(WIDE, ALONE.name).items()}

    @staticmethod
    def lines(r: Results) -> list[str]:
        return []


class Filters(Anatomy):
    """Experiment 1: a unit is a filter, alone with a threshold fitted on the selection set."""
    experiment = eval_cnn
    settings = FilterChoice()
    axes = {"conv.weight": 1, "decision.weight": 2}
    columns = (ALONE, DETECTORS, COSINE)
    arms = (INIT_CHOICE, RESTARTS)
    trainings = 1
    panels = (alignment_panel, init_panel, detectors_panel)

    def __init__(self, s: eval_cnn.Settings, own: FilterChoice, gen: torch.Generator) -> None:
        super().__init__(s, own, gen)
        self.selection = held(eval_cnn.selection(s, gen, own.selection, s.rounds), s.rounds)
        self.kernel = torch.tensor(s.task().kernel, device=gen.device)

    def alone(self, stack: engine.Stack, *scorers: engine.Scorer) -> list[OnSet]:
        """Each filter of each group alone, threshold fitted on each round's selection set, and every network:
        on the selection sets and on those of `scorers`. The groups hold the same rounds (row i is round
        i % R), so all their filters meet a round's sets at once, a chunk of rounds at a time; a network's
        logit is a linear map of its filters' max-pooled responses (NaiveCNN.decide), so one pooling of a
        set serves its filters alone and its networks, as engine.evaluate scores them."""
        sets = (self.selection, *scorers)
        ws = [filters(stack.group_params(g)) for g in stack.groups]
        w, rounds, counts = torch.cat(ws, 1), len(ws[0]), [v.shape[1] for v in ws]
        empty = lambda dtype: torch.empty(stack.networks, dtype=dtype, device=w.device)
        scored = [(empty(torch.float), empty(torch.bool)) for _ in sets]
        parts = []
        for a in range(0, rounds, CHUNK):
            b = min(a + CHUNK, rounds)
            batches = [sc.data(a, b) for sc in sets]
            pooled = [(responses(w[a:b], batch), batch[1]) for batch in batches]
            parts.append(accuracies_alone(*pooled))
            for (values, y), sc, (scores, diverged) in zip(pooled, sets, scored):
                for g, v in zip(stack.groups, values.split(counts, -1)):
                    params, rows = stack.group_params(g, a, b), slice(g.start + a, g.start + b)
                    scores[rows], diverged[rows] = engine.verdict(NaiveCNN.decide(v, params), y, sc.metric, params)
        joined = [torch.cat(p).split(counts, 1) for p in zip(*parts)]
        return [OnSet(list(per_group), on) for per_group, on in zip(joined, scored)]

    def inspect(self, stack, start):
        selected, validated = self.alone(stack, self.validation)
        ranks, measured = selected.alone, []
        for g, on_selection, on_validation in zip(stack.groups, selected.alone, validated.alone):
            alone = on_validation.gather(1, top(on_selection, 1))[:, 0]
            detectors = (on_validation >= self.s.solved_at).sum(1)
            aligned = cosine(filters(stack.group_params(g, params=start)), self.kernel).max(1).values
            measured += [((ALONE.name, a), (DETECTORS.name, d), (COSINE.name, c))
                         for a, d, c in zip(alone.tolist(), detectors.tolist(), aligned.tolist())]
        return Inspection(ranks, measured, validated.scored, selected.scored)

    def choose_at_init(self, pool: engine.Stack) -> Tensor:
        """Each candidate's initial filter alone on the selection sets, nothing trained: (R, candidates)."""
        return torch.cat(self.alone(pool)[0].alone, 1)

    def own_arms(self, sizes, bar):
        """`top` fresh Naive(1) per round: the best of the first n chosen before training (its initial filter
        alone on the selection set) and the best of the first n chosen after training (its selection score)."""
        rounds, top_n = self.s.rounds, max(sizes)
        pool = engine.init_stack([eval_cnn.model(self.s, "Naive", eval_cnn.SMALL)] * top_n, rounds, self.gen)
        before = self.choose_at_init(pool)
        start = fitted(eval_cnn, self.s, self.gen, pool, bar)
        trained, inspected = examined(self, pool, start, [("pool", c + 1) for c in range(top_n)])
        after = inspected.selected[0].view(top_n, rounds).t()
        rows = []
        for n in range(1, top_n + 1):
            for name, chooser in ((INIT_CHOICE, before), (RESTARTS, after)):
                picks = chooser[:, :n].argmax(1).tolist()
                rows += [dataclasses.replace(trained[c * rounds + r], model=name, sweep=n) for r, c in enumerate(picks)]
        return rows

    @staticmethod
    def holds(r):
        return {n: v > 0 for n, v in r.column(WIDE, DETECTORS.name).items()}

    @staticmethod
    def lines(r):
        wide, solved = r.scores(WIDE), r.solved(WIDE)
        detectors, cosines = r.column(WIDE, DETECTORS.name), r.column(WIDE, COSINE.name)
        init, restarts = r.scores(INIT_CHOICE), r.scores(RESTARTS)
        out = []
        for n in wide:
            bins = "; ".join(f"{name} {percent(inside)} of {len(inside)}"
                             for name, _, inside in cosine_bins(cosines[n], solved[n]))
            bins = bins or "-"
            out += [f"  filters {n}: detectors per network {mean_ci(detectors[n])} (solved ones "
                    f"{detectors[n][solved[n]].mean() if solved[n].any() else float('nan'):.2f}); best initial "
                    f"cosine {mean_ci(cosines[n])}; solved by best initial cosine: {bins}"]
        for n in init:
            out.append(f"  {n} candidates: init-only choice {percent(init[n] >= r.solved_at)}, best of {n} trained "
                       f"{percent(restarts[n] >= r.solved_at)}")
            if n in wide:
                out.append(f"    init-only choice - one Naive({n}): {report.compare(init[n], wide[n], False, r.solved_at)}")
            out.append(f"    init-only choice - best of {n} trained (paired): "
                       f"{report.compare(init[n], restarts[n], True, r.solved_at)}")
        return out


class Pairs(Anatomy):
    """Experiment 2: a unit is a hidden unit; the sub-network is the pair the network relies on most."""
    experiment = eval_bool
    settings = PairChoice()
    axes = {"hidden.weight": 1, "hidden.bias": 1, "output.weight": 2}

    def inspect(self, stack, start):
        ranks = [reliance(stack.group_params(g)) for g in stack.groups]
        pairs = [keep_units(stack.group_params(g), top(rank, eval_bool.SMALL), self.axes)
                 for g, rank in zip(stack.groups, ranks)]
        alone = self.validation(stack_of(eval_bool.model(self.s, "Naive", eval_bool.SMALL), pairs))[0]
        return Inspection(ranks, [((ALONE.name, a),) for a in alone.tolist()], self.validation(stack))


ANATOMIES: dict[str, type[Anatomy]] = {a.experiment.NAME: a for a in (Filters, Pairs)}
assert set(ANATOMIES) == set(EXPERIMENTS)


# ----------------------------------------------------------------------------- the run

def examined(anatomy: Anatomy, stack: engine.Stack, start: dict[str, Tensor], labels: list[tuple[str, int]]
             ) -> tuple[list[report.Row], Inspection]:
    """The rows of a trained stack: scores and divergence on each round's validation set, the test-set
    and anatomy measurements; and what the anatomy read of it."""
    inspected = anatomy.inspect(stack, start)
    tests = anatomy.test(stack)
    rows = report.rows_of(stack, labels, inspected.validated,
                          measured=[(*t, *m) for t, m in zip(tests, inspected.measured)])
    return rows, inspected


def studied_sizes(e: ModuleType, s: cli.Settings) -> list[int]:
    """The sweep from the smallest size that solves the task up (a smaller network holds no such sub-network)."""
    return [n for n in s.sizes() if n >= e.SMALL]


def run(e: ModuleType, s: cli.Settings, own: Mechanism, gen: torch.Generator) -> list[report.Row]:
    anatomy = ANATOMIES[e.NAME](s, own, gen)
    sizes = studied_sizes(e, s)
    with report.bar((3 + anatomy.trainings) * s.steps, f"mechanism ({e.NAME})") as bar:
        wide = engine.init_stack([e.model(s, "Naive", n) for n in sizes], s.rounds, gen)
        start = fitted(e, s, gen, wide, bar)
        rows, inspected = examined(anatomy, wide, start, [(WIDE, n) for n in sizes])
        random = [torch.rand(rank.shape, generator=gen, device=gen.device).argsort(1) for rank in inspected.ranks]
        small = e.model(s, "Naive", e.SMALL)
        for name, order in ((TICKET, inspected.ranks), (CONTROL, random)):
            units = [top(o, e.SMALL) for o in order]
            sub = stack_of(small, [keep_units(wide.group_params(g, params=start), u, anatomy.axes)
                                   for g, u in zip(wide.groups, units)])
            rows += examined(anatomy, sub, fitted(e, s, gen, sub, bar), [(name, n) for n in sizes])[0]
        rows += anatomy.own_arms(sizes, bar)
    return rows


# ----------------------------------------------------------------------------- what the rows say

def notes(e: ModuleType) -> cli.Notes:
    """The anatomy per size, and the key differences with 95 % bootstrap intervals (report.compare)."""
    def text(rows: list[report.Row], solved_at: float) -> str:
        r = Results(rows, solved_at, e)
        wide, solved, holds, alone = r.scores(WIDE), r.solved(WIDE), r.holds(), r.column(WIDE, ALONE.name)
        tests = r.column(WIDE, "test_error")
        tickets, controls = r.scores(TICKET), r.scores(CONTROL)
        fresh = wide.get(e.SMALL)
        lines = [f"mechanism ({e.NAME}): per {e.SIZE}, shares of rounds [95 % Wilson], means [95 % bootstrap over rounds]"]
        for n in wide:
            of_solved = f"{100 * holds[n][solved[n]].mean():.1f} %" if solved[n].any() else "-"
            lines.append(f"  {e.SIZE} {n}: wide solves {percent(solved[n])}; holds a sub-network ({e.SIZE} {e.SMALL}) that "
                         f"solves alone {percent(holds[n])} (of the solved ones {of_solved}); the best-ranked one "
                         f"alone solves {percent(alone[n] >= solved_at)}; test error {mean_ci(tests[n], 4)}")
        lines += ANATOMIES[e.NAME].lines(r)
        lines.append("key differences a - b:")
        for n in tickets:
            lines.append(f"  {e.SIZE} {n}: ticket {percent(tickets[n] >= solved_at)}, control "
                         f"{percent(controls[n] >= solved_at)}")
            lines.append(f"    ticket - control (paired): {report.compare(tickets[n], controls[n], True, solved_at)}")
            lines.append(f"    ticket - wide (paired): {report.compare(tickets[n], wide[n], True, solved_at)}")
            if fresh is not None:
                lines.append(f"    ticket - fresh {e.SIZE} {e.SMALL}: {report.compare(tickets[n], fresh, False, solved_at)}")
        return "\n".join(lines + across(r))
    return text


def across(r: Results) -> list[str]:
    """The sweep in one line: the range of each arm's solved share over the sizes above the smallest solving
    one, and where the solved-share differences' 95 % intervals exclude 0."""
    sizes = [n for n in r.scores(TICKET) if n > r.e.SMALL]
    if not sizes:
        return []
    arms = {"wide": WIDE, "ticket": TICKET, "control": CONTROL}
    shares = {short: [100 * r.solved(name)[n].mean() for n in sizes] for short, name in arms.items()}
    ranges = ", ".join(f"{name} {min(v):.0f}-{max(v):.0f} %" for name, v in shares.items())
    out = [f"across {r.e.SIZE} {sizes[0]}-{sizes[-1]}: solved {ranges}"]
    for other in ("control", "wide"):
        cis = {n: report.difference_ci(r.solved(TICKET)[n], r.solved(arms[other])[n], True) for n in sizes}
        apart = [f"{n} ({100 * d[0]:+.0f})" for n, d in cis.items() if d[1] > 0 or d[2] < 0]
        out.append(f"  ticket - {other} (paired): solved-share interval excludes 0 at {len(apart)} of {len(sizes)} sizes: "
                   f"{', '.join(apart) or '-'}; differences {min(d[0] for d in cis.values()) * 100:+.0f} to "
                   f"{max(d[0] for d in cis.values()) * 100:+.0f} points")
    return out


SHARED_PANELS = (anatomy_panel, ticket_panel, profile_panel)


def render(e: ModuleType):
    """The figure: the shared panels, then the anatomy's own, three a row."""
    panels = SHARED_PANELS + ANATOMIES[e.NAME].panels

    def drawn(summaries, rows: list[report.Row], solved_at: float):
        r = Results(rows, solved_at, e)
        lines = -(-len(panels) // 3)
        fig, axes = report.canvas(lines, 3, (18, 4.8 * lines))
        for panel, ax in zip(panels, axes.flatten()):
            panel(ax, r)
            ax.grid(alpha=0.3)
            if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.text(0.5, 0.005, "bands and bars: 95 % intervals (shares: Wilson; means: bootstrap over rounds)",
                 ha="center", fontsize=8, color="0.4")
        return report.png(fig)
    return drawn


def figure(e: ModuleType) -> report.Figure:
    anatomy = ANATOMIES[e.NAME]
    return dataclasses.replace(e.FIGURE, name=f"mechanism_{e.NAME}", views=(), models=(WIDE, TICKET, CONTROL, *anatomy.arms),
                               columns=(*e.TEST_COLUMNS, *anatomy.columns), title=f"{e.FIGURE.title}: why width helps",
                               render=render(e))


def job(e: ModuleType, s: cli.Settings, own: Mechanism) -> cli.Job:
    name = f"mechanism_{e.NAME}"
    return cli.Job((figure(e),), s, e.PROTOCOL, lambda gen: {name: run(e, s, own, gen)}, notes={name: notes(e)},
                   study=own, study_protocol=ANATOMIES[e.NAME].settings)


PROTOCOLS = {name: e.PROTOCOL for name, e in EXPERIMENTS.items()}
OWN = {name: ANATOMIES[name].settings for name in EXPERIMENTS}


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS, OWN)


def jobs(args) -> list[cli.Job]:
    return [job(EXPERIMENTS[name], s, own) for name, (s, own) in cli.study_settings(args, PROTOCOLS, OWN).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
