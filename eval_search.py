"""Width against the explorers the write-up names: particle swarms, evolution strategies and noisy gradients.

The write-up says over-parameterization works like an evolutionary algorithm or a particle swarm: many
candidates explore the loss. This study asks, for both experiments: at the same final network size and the
same compute, which way of exploring solves the task most often? Every arm ends with one network of the
small size (SMALL: 1 filter / width 2), but the wide one:
  wide SGD         one network SMALL * b wide, plain SGD for the protocol's steps (the write-up's answer);
  best-of-k SGD    b small networks, protocol steps each, the best on a selection set;
  SGD longer       one small network, b times the protocol's steps (rules out the budget);
  noisy SGD        the same with annealed Gaussian gradient noise, sigma0 / (1 + t)^0.55 (SGLD-style);
  perturbed SGD    the same with Jin et al.'s kicks in a ball where the gradient is small;
  PSO              k particles over the small network's weights, constriction coefficients, fitness the
                   training loss on fresh batches; the best personal best chosen on a selection set;
  sep-CMA-ES       the evolution strategy on the same weights; mean or best candidate, chosen alike;
  memetic PSO/ES   the same explorers whose candidates also take SGD steps (Lamarckian);
  HyperNetwork     the write-up's, b times the protocol's steps, its network at z = 0.
b is the budget: multiply-adds per round (a fitness evaluation costs a forward pass per example, a gradient
step a forward and a backward pass, the backward counted as two forwards), in units of the protocol's
training of one small network, from 1 to the widest network of the sweep (--max-filters / --max-width).
Every arm is tuned at every budget, on tuning rounds scored on fresh selection sets, by the reported
criterion (share of rounds solved; ties: better mean, then the first grid point): learning rate and momentum
of the gradient arms on tuning.py's grid, and a small grid of each explorer's own hyperparameters. The
reported rounds are scored on validation sets of their own (one per round) and each final network is measured
on the experiment's large test set (TEST_COLUMNS: its error rate and, in experiment 1, the start positions at
which it misses the pattern). Writes search_cnn and search_bool (.png, .csv, .json).
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import copy
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import torch
from torch import Tensor

import cli
import engine
import eval_bool
import eval_cnn
import report
import search as S
import tuning

SCRIPTS = {m.NAME: m for m in (eval_cnn, eval_bool)}
FLAGS = ["rounds", "steps", "solved_at", "max_filters", "max_width"]
CRITERION = "solved"

WIDE, RESTARTS, LONGER, NOISY, PERTURBED = "wide SGD", "best-of-k SGD", "SGD longer", "noisy SGD", "perturbed SGD"
PSO, ES, MEMETIC_PSO, MEMETIC_ES, HYPER = "PSO", "sep-CMA-ES", "memetic PSO", "memetic ES", "HyperNetwork"
ARMS = (WIDE, RESTARTS, LONGER, NOISY, PERTURBED, PSO, ES, MEMETIC_PSO, MEMETIC_ES, HYPER)

# The explorers' own grids (every point of a grid is tried at every budget it fits).
PARTICLES = (4, 8, 16, 32)                   # PSO: particles per round
BATCHES = (1, 4)                           # PSO and ES: fitness batch, in protocol training batches
SIGMAS = (0.3, 1.0, 3.0)                   # sep-CMA-ES: initial step size (weights start within +-1 / sqrt(fan_in))
SGD_STEPS = (1, 4, 16)                     # memetic: SGD steps of every candidate per generation
NOISE = (0.03, 0.1, 0.3, 1.0)              # noisy SGD: sigma0 of the gradient noise
GAMMA = 0.55                               # its decay, sigma0 / (1 + t)^gamma (Welling & Teh's step-size exponent)
RADII = (0.3, 1.0)                         # perturbed SGD: radius of a kick ...
THRESHOLDS = (0.01, 0.1)                   # ... given when the gradient norm is below this ...
WAIT = 10                                  # ... and the last kick is more than this many steps old
BLOCK_BYTES = 32 * 2 ** 20                 # fresh training examples drawn at once
BUDGETS = (1, 2, 4)                        # budgets tried below the largest (the widest network's)
NEAR = 2                                   # trained b > 1 times longer: learning rates within 2 grid points of b = 1's


@dataclass(frozen=True, kw_only=True)
class Search(cli.StudySettings):
    """The study's own settings, kept beside the experiment's."""
    tuning_rounds: int = cli.setting("tuning rounds per grid point (each arm, each budget)", cli.positive,
                                     "a positive integer", default=100)
    selection: int = cli.setting("selection set per round, in the experiment's unit (pairs of sequences / points)",
                                 cli.within(1, 100_000), "in [1, 100000]")

    def quick(self) -> "Search":
        return dataclasses.replace(self, tuning_rounds=min(self.tuning_rounds, 6), selection=min(self.selection, 50))

    def memory_bytes(self, base: cli.Settings) -> int:
        """The experiment's sweep, fresh examples drawn in blocks, and the largest tuning stack (27 grid points
        of every budget's wide network) with its optimizer state."""
        return base.memory_bytes() + 4 * BLOCK_BYTES + 27 * self.tuning_rounds * 2 ** 16


PROTOCOLS = {name: dataclasses.replace(script.PROTOCOL, rounds=200) for name, script in SCRIPTS.items()}
OWN = {"cnn": Search(selection=200), "bool": Search(selection=500)}


# ----------------------------------------------------------------------------- one experiment's run

@dataclass
class Run:
    """What every arm of one experiment needs: its script, settings, random stream and costs."""
    script: ModuleType
    s: cli.Settings
    study: Search
    gen: torch.Generator
    bar: object = None

    def __post_init__(self) -> None:
        """One selection unit of data (its own generator: the run's stream is untouched), to count costs."""
        (x, *_), y = self.script.selection(self.s, torch.Generator(self.gen.device).manual_seed(0), 1, 1).data(0, 1)
        self.example, self.per_unit = x[0][:1].cpu(), y.shape[-1]  # one example; examples per unit (pair: 2)

    @property
    def small(self) -> torch.nn.Module:
        return self.script.model(self.s, "Naive", self.script.SMALL)

    def forward_macs(self, template: torch.nn.Module) -> int:
        """Multiply-adds of one forward pass of a Naive network on one example (counted on the CPU, on a copy:
        the run's device may be another)."""
        return S.forward_macs(copy.deepcopy(template).cpu().eval(), self.example)

    def step_macs(self, template: torch.nn.Module) -> int:
        return S.gradient_step_macs(self.forward_macs(template), self.script.BATCH)

    def unit(self) -> int:
        """One budget unit: the protocol's training of one small network (multiply-adds per round)."""
        return self.s.steps * self.step_macs(self.small)

    def budgets(self) -> list[int]:
        """1, 2 and 4 units and the widest network of the sweep's (those below it)."""
        top = max(self.s.sizes()) // self.script.SMALL
        if top < 1:
            raise cli.UsageError(f"the widest network of the sweep must be at least the small one "
                                 f"({self.script.SMALL} {self.script.SIZE}): it sets the largest budget")
        return sorted({b for b in BUDGETS if b < top} | {top})

    def at(self, steps_factor: int = 1, rounds: int | None = None) -> cli.Settings:
        return dataclasses.replace(self.s, steps=steps_factor * self.s.steps, rounds=rounds or self.s.rounds)


@dataclass
class Outcome:
    """An arm at one budget: its template, each round's candidates (rounds, c, D), what one round cost."""
    model: str
    budget: int
    template: torch.nn.Module
    candidates: Tensor
    macs: int
    examples: int
    setting: dict
    grid: list = dataclasses.field(default_factory=list)     # every grid point tried, with its criterion


def positions(stack: engine.Stack, groups: list[engine.Group]) -> Tensor:
    """The flat weights of some groups of a stack (of one size), candidate-major -> (rounds, candidates, D)."""
    flat = [S.flatten(stack.group_params(g)) for g in groups]
    return torch.stack(flat, 1)


def stack_of(template: torch.nn.Module, x: Tensor) -> engine.Stack:
    return engine.frozen_stack(template, S.unflatten(x, S.shapes_of(template)))


def scored(template: torch.nn.Module, x: Tensor, scorer: engine.Scorer) -> tuple[Tensor, Tensor]:
    """Scores and divergence of networks x (N, D), row i on round i % cycle's data."""
    return scorer(stack_of(template, x))


def chosen(template: torch.nn.Module, candidates: Tensor, scorer: engine.Scorer) -> Tensor:
    """Each round's candidate best on the selection scorer (cycle: the rounds; ties: the first) -> (rounds, D)."""
    rounds, c, _ = candidates.shape
    if c == 1:
        return candidates[:, 0]
    score = scored(template, candidates.transpose(0, 1).flatten(0, 1), scorer)[0].view(c, rounds).t()
    return candidates[torch.arange(rounds), score.argmax(1)]


def choose(values: list[np.ndarray], solved_at: float) -> int:
    """The grid point of best criterion on its tuning rounds; ties: better mean, then the first."""
    rank = lambda i: (tuning.criterion_value(values[i], CRITERION, solved_at), float(values[i].mean()), -i)
    return max(range(len(values)), key=rank)


def tuned_outcome(run: Run, outcomes: list[Outcome]) -> tuple[Outcome, int]:
    """Of a grid's outcomes (each with tuning rounds first, then the reported rounds), the one chosen on its
    tuning rounds' final networks (each picked on one fresh selection set, scored on another), cut to its
    reported rounds, with every grid point's criterion; and its index."""
    tune = run.study.tuning_rounds
    values, table = [], []
    for o in outcomes:
        pick = run.script.selection(run.s, run.gen, run.study.selection, tune)
        judge = run.script.selection(run.s, run.gen, run.study.selection, tune)
        final = chosen(o.template, o.candidates[:tune], pick)
        values.append(scored(o.template, final, judge)[0].cpu().numpy())
        table.append({**o.setting, CRITERION: tuning.criterion_value(values[-1], CRITERION, run.s.solved_at)})
    i = choose(values, run.s.solved_at)
    best = outcomes[i]
    edges = [k for k in table[i] if k not in (CRITERION, "generations") and isinstance(table[i][k], (int, float))
             and len({g[k] for g in table}) > 1 and table[i][k] in (min(g[k] for g in table), max(g[k] for g in table))]
    setting = {**best.setting, CRITERION: table[i][CRITERION], "grid_edge": edges}
    return dataclasses.replace(best, candidates=best.candidates[tune:], grid=table, setting=setting), i


# ----------------------------------------------------------------------------- gradient arms (tuning.py)

def gradient_choices(run: Run) -> dict[tuple[str, int], tuning.Choice]:
    """Learning rate and momentum of every gradient arm at every budget, by tuning.py: wide networks at the
    protocol's steps on the whole grid; a small network and the HyperNetwork at the protocol's steps on the whole
    grid, and trained b times longer on the learning rates within NEAR grid points of their choice there."""
    budgets, naive = run.budgets(), lambda n: run.script.model(run.s, "Naive", n)
    hyper = run.script.model(run.s, "HyperNetwork", run.script.SMALL)
    tune = lambda arms, lrs=tuning.LR_GRID: tuning.tune(run.script, arms, run.study.tuning_rounds, run.study.selection,
                                                       CRITERION, run.gen, run.bar, lrs)[0]
    choices = tune([tuning.Arm(WIDE, b, run.s, naive(b * run.script.SMALL)) for b in budgets]
                   + [tuning.Arm(LONGER, 1, run.s, run.small)])
    choices.update(tune([tuning.Arm(HYPER, 1, run.s, hyper)]))
    for model, template in ((LONGER, run.small), (HYPER, hyper)):
        at = tuning.LR_GRID.index(choices[model, 1].lr)
        near = tuning.LR_GRID[max(0, at - NEAR):at + NEAR + 1]
        choices.update(tune([tuning.Arm(model, b, run.at(b), template) for b in budgets if b > 1], near))
    return choices


def setting_of(choice: tuning.Choice, tuned_here: bool = True) -> dict:
    """The learning rate and momentum chosen; where they were chosen for this arm, the criterion there."""
    own = {CRITERION: choice.value, "lr_at_grid_edge": choice.edge} if tuned_here else {}
    return {"lr": choice.lr, "momentum": choice.momentum, **own}


def wide_and_restarts(run: Run, choices: dict) -> list[Outcome]:
    """The wide networks (one stack) and the best-of-k candidates (one stack, k up to the largest budget,
    the first b of them at budget b), at the protocol's steps."""
    budgets, script, small = run.budgets(), run.script, run.small
    wide = script.train(run.s, run.gen, [script.model(run.s, "Naive", b * script.SMALL) for b in budgets], run.bar,
                        lr=[choices[WIDE, b].lr for b in budgets], momentum=[choices[WIDE, b].momentum for b in budgets])
    out = []
    for b, group in zip(budgets, wide.groups):
        steps = run.s.steps * run.step_macs(group.template)
        out.append(Outcome(WIDE, b, group.template, positions(wide, [group]), steps, run.s.steps * script.BATCH,
                           setting_of(choices[WIDE, b])))
    top, one = max(budgets), choices[WIDE, 1]
    restarts = script.train(run.s, run.gen, [small] * top, run.bar, lr=[one.lr] * top, momentum=[one.momentum] * top)
    every = positions(restarts, restarts.groups)
    for b in budgets:
        out.append(Outcome(RESTARTS, b, small, every[:, :b], b * run.unit(), b * run.s.steps * script.BATCH,
                           {**setting_of(one, False), "k": b}))
    return out


def longer(run: Run, choices: dict, model: str, template: torch.nn.Module) -> list[Outcome]:
    """One network trained b times the protocol's steps at each budget b."""
    out = []
    for b in run.budgets():
        c = choices[model, b]
        stack = run.script.train(run.at(b), run.gen, [template], run.bar, lr=[c.lr], momentum=[c.momentum])
        out.append(Outcome(model, b, template, positions(stack, stack.groups), b * run.unit(),
                           b * run.s.steps * run.script.BATCH, setting_of(c)))
    return out


def noisy(run: Run, choices: dict, model: str, grid: list[dict], factory: Callable) -> list[Outcome]:
    """SGD with noise at SGD longer's learning rate and momentum, every grid point in one stack (tuning rounds
    then reported rounds per point), chosen per budget."""
    out = []
    rounds = run.study.tuning_rounds + run.s.rounds
    for b in run.budgets():
        c = choices[LONGER, b]
        stack = engine.init_stack([run.small] * len(grid), rounds, run.gen)
        each = {k: stack.per_round([point[k] for point in grid]) for k in grid[0]}
        optimizer = factory(c.lr, c.momentum, each, run.gen, S.trained_masks(stack))
        run.script.fit(run.at(b, rounds), run.gen, stack, run.bar, optimizer=optimizer)
        grid_outcomes = [Outcome(model, b, run.small, positions(stack, [g]), b * run.unit(),
                                 b * run.s.steps * run.script.BATCH, {**setting_of(c, False), **point})
                         for g, point in zip(stack.groups, grid)]
        out.append(tuned_outcome(run, grid_outcomes)[0])
    return out


def gradient_noise(lr, momentum, each, gen, masks):
    return S.noisy_sgd(lr, momentum, each["sigma0"], GAMMA, gen, masks)


def kicks(lr, momentum, each, gen, masks):
    return S.perturbed_sgd(lr, momentum, each["threshold"], each["radius"], WAIT, gen, masks)


# ----------------------------------------------------------------------------- population arms (search.py)

class Stream:
    """Fresh training examples for each of `rounds` rounds, `units` selection units at a time, drawn in blocks
    by the experiment's `selection` (a fresh draw of the task's data: training data, not a set a choice sees)."""

    def __init__(self, run: Run, rounds: int, units: int, draws: int) -> None:
        self.run, self.rounds, self.units, self.left = run, rounds, units, draws
        (x, *_), _ = run.script.selection(run.s, torch.Generator(run.gen.device).manual_seed(0), 1, 1).data(0, 1)
        self.block = max(1, min(draws, BLOCK_BYTES // (4 * rounds * units * x[0].numel())))
        self.batches: list = []

    def __call__(self) -> engine.Batch:
        if not self.batches:
            self._draw()
        self.left -= 1
        return self.batches.pop(0)

    def _draw(self) -> None:
        count = min(self.block, max(self.left, 1))
        scorer = self.run.script.selection(self.run.s, self.run.gen, self.units * count, self.rounds)
        inputs, y = scorer.data(0, self.rounds)
        size = y.shape[-1] // count
        cut = lambda t, i: t[:, i * size:(i + 1) * size]
        self.batches = [(tuple(cut(x, i) for x in inputs), y[..., i * size:(i + 1) * size]) for i in range(count)]


def per_candidate(stream: Stream, k: int) -> Callable[[], engine.Batch]:
    """A round's batch for each of its k candidates (rows r * k + c, as search.py stacks them)."""
    def batch() -> engine.Batch:
        inputs, y = stream()
        spread = lambda t: t.repeat_interleave(k, 0)
        rows = stream.rounds * k
        return tuple(spread(x) for x in inputs), (spread(y) if y.dim() == 2 else y.expand(rows, -1))
    return batch


@dataclass(frozen=True)
class Explorer:
    """A population explorer at one grid point: k candidates per generation, fitness batches of `batch` protocol
    training batches, `sgd_steps` SGD steps per candidate per generation (memetic), with `lr`, `momentum`."""
    kind: str                  # "pso" or "es"
    batch: int
    particles: int = 0         # PSO
    sigma: float = 0.0         # ES
    sgd_steps: int = 0
    lr: float = 0.0
    momentum: float = 0.0

    def candidates(self, dims: int) -> int:
        return self.particles if self.kind == "pso" else 4 + int(3 * np.log(dims))

    def setting(self) -> dict:
        own = {"particles": self.particles} if self.kind == "pso" else {"sigma0": self.sigma}
        memetic = {"sgd_steps": self.sgd_steps, "lr": self.lr, "momentum": self.momentum} if self.sgd_steps else {}
        return {**own, "batch": self.batch, **memetic}


def explore(run: Run, model: str, budget: int, point: Explorer, rounds: int) -> Outcome | None:
    """One grid point of a population explorer at one budget, all rounds in one swarm (None: the budget buys
    less than one generation). Candidates: PSO's personal bests; the ES's mean and best candidate."""
    small = run.small
    fwd, dims = run.forward_macs(small), sum(p.numel() for p in small.parameters())
    examples = point.batch * run.script.BATCH
    units = max(1, examples // run.per_unit)
    k = point.candidates(dims)
    first = k * S.evaluation_macs(fwd, examples) if point.kind == "pso" else 0
    each = S.generation_macs(fwd, examples, k, point.sgd_steps)
    generations = (budget * run.unit() - first) // each
    if generations < 1:
        return None
    draws = (first > 0) + generations * (1 + point.sgd_steps)
    stream = Stream(run, rounds, units, draws)
    loss = S.network_loss(small.train(), per_candidate(stream, k))
    if point.kind == "pso":
        x0 = S.population(small, rounds, k, run.gen)
        explorer = S.PSO(x0, loss(x0.flatten(0, 1)), run.gen)
    else:
        explorer = S.SepCMAES(S.population(small, rounds, 1, run.gen)[:, 0], point.sigma, run.gen, popsize=k)
    descend = S.Descent(loss, engine.make_optimizer("sgd", point.lr, point.momentum)) if point.sgd_steps else None
    S.evolve(explorer, loss, generations, descend, point.sgd_steps)
    found = explorer.best_x if point.kind == "pso" else torch.stack([explorer.mean, explorer.best_x], 1)
    return Outcome(model, budget, small, found, first + generations * each, draws * units * run.per_unit,
                   {**point.setting(), "generations": generations})


def population(run: Run, model: str, grid: Callable[[int], list[Explorer]]) -> tuple[list[Outcome], dict]:
    """An explorer at every budget, its grid point chosen on tuning rounds; and the points chosen."""
    out, picked = [], {}
    rounds = run.study.tuning_rounds + run.s.rounds
    for b in run.budgets():
        tried = [(p, explore(run, model, b, p, rounds)) for p in grid(b)]
        tried = [(p, o) for p, o in tried if o is not None]
        if tried:
            best, i = tuned_outcome(run, [o for _, o in tried])
            out.append(best)
            picked[b] = tried[i][0]
    return out, picked


def populations(run: Run, choices: dict) -> list[Outcome]:
    """PSO and sep-CMA-ES on their grids, then their memetic hybrids on SGD steps per generation and batch, at
    the plain explorer's chosen particles / step size and the small network's tuned learning rate and momentum."""
    one = choices[WIDE, 1]
    swarms, best_swarm = population(run, PSO, lambda b: [Explorer("pso", batch, particles=k)
                                                         for k in PARTICLES for batch in BATCHES])
    strategies, best_es = population(run, ES, lambda b: [Explorer("es", batch, sigma=sigma)
                                                         for sigma in SIGMAS for batch in BATCHES])
    memetic = lambda picked: (lambda b: [dataclasses.replace(picked[b], sgd_steps=n, batch=batch, lr=one.lr,
                                                             momentum=one.momentum)
                                         for n in SGD_STEPS for batch in BATCHES] if b in picked else [])
    hybrids_pso, _ = population(run, MEMETIC_PSO, memetic(best_swarm))
    hybrids_es, _ = population(run, MEMETIC_ES, memetic(best_es))
    return swarms + strategies + hybrids_pso + hybrids_es


# ----------------------------------------------------------------------------- rows

COLUMNS = (report.Column("macs", int, key=False, low=0), report.Column("examples", int, key=False, low=0),
           report.Column("candidates", int, key=False, low=1))


def run_experiment(name: str, s: cli.Settings, study: Search, gen: torch.Generator, record: dict
                   ) -> dict[str, list[report.Row]]:
    script = SCRIPTS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # tiny tensors: a second intra-op thread only synchronises
    try:
        with report.bar(None, f"search ({name})") as bar:
            run = Run(script, s, study, gen, bar)
            outcomes = explore_all(run)
        validation, test = script.validation(s, gen, s.rounds), script.test_set(s, gen)
        rows = []
        for o in outcomes:
            pick = script.selection(s, gen, study.selection, s.rounds)
            final = stack_of(o.template, chosen(o.template, o.candidates, pick))
            (scores, diverged), measured = validation(final), test(final)
            extra = (("macs", o.macs), ("examples", o.examples), ("candidates", o.candidates.shape[1]))
            rows += [report.Row(o.model, o.budget, o.template.final_size, r, sc, d, (*extra, *measured[r]))
                     for r, (sc, d) in enumerate(zip(scores.tolist(), diverged.tolist()))]
            record.setdefault("chosen", {}).setdefault(o.model, {})[str(o.budget)] = {
                **o.setting, "macs": o.macs, "examples": o.examples, "grid": o.grid}
        record["unit_macs"] = run.unit()
        return {f"search_{name}": rows}
    finally:
        torch.set_num_threads(threads)


def explore_all(run: Run) -> list[Outcome]:
    choices = gradient_choices(run)
    hyper = run.script.model(run.s, "HyperNetwork", run.script.SMALL)
    outcomes = wide_and_restarts(run, choices) + longer(run, choices, LONGER, run.small)
    outcomes += noisy(run, choices, NOISY, [{"sigma0": v} for v in NOISE], gradient_noise)
    outcomes += noisy(run, choices, PERTURBED, [{"radius": r, "threshold": t} for r in RADII for t in THRESHOLDS], kicks)
    outcomes += populations(run, choices)
    return outcomes + longer(run, choices, HYPER, hyper)


# ----------------------------------------------------------------------------- figure, notes, flags

def figure(name: str, unit: int) -> report.Figure:
    script = SCRIPTS[name]
    view = report.View(f"budget, x {unit:,} multiply-adds per round (1: one small net, protocol steps)",
                       lambda s: s.sweep, log_x=2)
    return dataclasses.replace(script.FIGURE, name=f"search_{name}", views=(view,), models=ARMS,
                               columns=(*COLUMNS, *script.TEST_COLUMNS),
                               title=f"{script.FIGURE.title}: explorers at equal compute",
                               styles=((HYPER, dict(color="black", marker="^", linestyle="none")),))


def notes(name: str, unit: int, choosing: int) -> cli.Notes:
    """Per budget, every arm's solved share (Wilson) and its difference from the wide network (bootstrap); and
    what choosing among a round's candidates on the selection set costs (`choosing` multiply-adds a candidate),
    which the budget does not charge."""
    def text(rows: list[report.Row], solved_at: float) -> str:
        scores = report.by_model(rows)
        candidates = {(r.model, r.sweep): r.get("candidates") for r in rows}
        lines = ["solved share, 95 % Wilson interval; a - wide SGD at the same budget, 95 % bootstrap; [the choice "
                 "among c candidates on the selection set, not charged, in budget units]:"]
        for b in sorted({r.sweep for r in rows}):
            for arm in ARMS:
                if b not in scores.get(arm, {}):
                    continue
                a = scores[arm][b]
                solved = int((a >= solved_at).sum())
                lo, hi = report.wilson_ci(solved, len(a))
                line = f"  b={b:<3} {arm:<14} solved {solved / len(a):.3f} [{lo:.3f}, {hi:.3f}] mean {a.mean():.4f}"
                if arm != WIDE and b in scores.get(WIDE, {}):
                    line += "; - wide: " + report.compare(a, scores[WIDE][b], False, solved_at)
                if candidates[arm, b] > 1:
                    line += f" [c={candidates[arm, b]}: {candidates[arm, b] * choosing / unit:.2f}]"
                lines.append(line)
        return "\n".join(lines)
    return text


def job(name: str, s: cli.Settings, study: Search) -> cli.Job:
    record: dict = {}
    probe = Run(SCRIPTS[name], s, study, torch.Generator())
    probe.budgets()                       # refused here, before anything trains, if the sweep cannot set them
    unit = probe.unit()
    choosing = study.selection * probe.per_unit * probe.forward_macs(probe.small)
    return cli.Job((figure(name, unit),), s, PROTOCOLS[name], lambda gen: run_experiment(name, s, study, gen, record),
                   notes={f"search_{name}": notes(name, unit, choosing)}, study=study, study_protocol=OWN[name], record=record)


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS, OWN)


def jobs(args) -> list[cli.Job]:
    return [job(name, s, study) for name, (s, study) in cli.study_settings(args, PROTOCOLS, OWN).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
