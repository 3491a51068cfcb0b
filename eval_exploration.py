"""Is width exploration? One wide network against the best of k small ones, every arm at its own tuned rates.

If over-parameterization works as exploration, exploring explicitly (train k small networks independently,
keep the one best on a selection set) should do as well as one network k times wider at the same number of
trained parameters, and it leaves a small final network. Arms, for both experiments alike (what differs comes
from the experiment module: its FAMILIES, SMALL network, sizes, selection unit):
  - one wide Naive network of every size of the sweep (candidates 1);
  - the best of k = 1..--restarts small networks of each trained family but the HyperNetwork (a family whose
    small network trains fewer parameters gets as many more candidates as equal parameters buy);
  - the HyperNetwork at z = 0 (the faithful evaluation) and the best of k = 1, 2, 4, .., --samples networks
    it generates from latents z ~ N(0, I) drawn after training.
Every arm is trained at its own learning rate and momentum (tuning.grid), chosen by tuning.choose on fresh
tuning rounds, each judged on a selection set of its own (a best of k latents picks its candidate on a second
fresh selection set), by --criterion (the share of rounds solved: what the comparison reports); a best of k
independently trained small networks trains at the rate chosen for one of them (see `restarted`). The reported rounds
are then trained afresh at the chosen rates and scored on per-round validation sets; a round's best candidate
is the one best on a fresh selection set, never on the validation set. At the protocol's length, every arm
also runs at the protocol's rates (the write-up's setting). Training length is a second axis: --lengths
lengths, --steps times --length-growth ** i; beyond the protocol's length only the largest wide network is
run, on --long-rounds rounds (tuning: --long-tuning-rounds). Selection noise, at the protocol's length: the
best of the largest k small Naive networks chosen on selection sets --selection-growth ** i times as large
(i = 0, 1, 2), against the oracle bound (the candidate best on the validation set itself: an upper bound of any
rule, not a method).
Every reported network (each round's chosen one) is also measured on the experiment's large test set: its
error rate and, in experiment 1, the start positions at which it misses the pattern (TEST_COLUMNS).
Writes exploration_{cnn,bool}, exploration_selection_{cnn,bool} and exploration_tuning_{cnn,bool}
(.png, .csv, .json); the JSON records every chosen rate and each arm's budget (parameters, compute, data).
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import functools
import sys
from dataclasses import dataclass
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
import search
import tuning
from hypernet import Z_DIM

SCRIPTS = {x.NAME: x for x in (eval_cnn, eval_bool)}
WIDE = "Naive"                                  # the family made wide
HYPER = "HyperNetwork"                          # z = 0, as the faithful runs score it
SAMPLED = "HyperNetwork at sampled latents"       # the best of k networks it generates
TUNED, PROTOCOL_RATES = "tuned", "protocol"
BLOCK_BYTES = 256 * 2 ** 20                     # the data (and activations) of one block of rounds scored at once
FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "min_width",
         "max_width"]

COLUMNS = (report.Column("steps", int, low=1), report.Column("candidates", int, low=1),
           report.Column("selection", int, low=1), report.Column("chosen_on", str), report.Column("rates", str),
           report.Column("lr", float, low=0), report.Column("momentum", float, low=0, high=1),
           report.Column("train_macs", int, key=False, low=0), report.Column("examples", int, key=False, low=0))
KEYS = [c.name for c in COLUMNS if c.key]


@dataclass(frozen=True, kw_only=True)
class Exploration(cli.StudySettings):
    """The study's own settings, kept beside an experiment's."""
    restarts: int = cli.setting("largest k of the best of k small networks", cli.positive, "a positive integer")
    samples: int = cli.setting("largest k of the best of k sampled latents (k = 1, 2, 4, ...)", cli.within(1, 4096),
                               "in [1, 4096]")
    selection: int = cli.setting("selection set of a round (the experiment's SELECTION_UNIT)", cli.within(1, 100_000),
                                 "in [1, 100000]")
    selection_growth: int = cli.setting("selection-noise figure: selection sets this many times larger, twice",
                                        cli.within(2, 1000), "in [2, 1000]")
    tuning_rounds: int = cli.setting("fresh rounds per grid point that choose each arm's rates", cli.positive,
                                     "a positive integer")
    criterion: str = cli.setting("what the rates are chosen for: the share of rounds solved, or the mean score",
                                 choices=tuning.CRITERIA, default="solved")
    lengths: int = cli.setting("training lengths: --steps times --length-growth ** i, i < this", cli.within(1, 4),
                               "in [1, 4]", default=3)
    length_growth: int = cli.setting("factor between training lengths", cli.within(2, 64), "in [2, 64]", default=4)
    long_rounds: int = cli.setting("rounds reported beyond the protocol's length", cli.positive, "a positive integer")
    long_tuning_rounds: int = cli.setting("tuning rounds beyond the protocol's length", cli.positive,
                                          "a positive integer")

    def quick(self) -> "Exploration":
        return dataclasses.replace(self, restarts=min(self.restarts, 3), samples=min(self.samples, 4),
                                   tuning_rounds=min(self.tuning_rounds, 4), lengths=min(self.lengths, 2),
                                   length_growth=2, long_rounds=min(self.long_rounds, 6),
                                   long_tuning_rounds=min(self.long_tuning_rounds, 3))

    def memory_bytes(self, base: cli.Settings) -> int:
        """The largest stack (the tuning grid of every arm, or the reported rounds) as the experiment's own
        estimate scales; the largest selection sets of every round, drawn at once; one block of them scored."""
        x = script_of(base)
        arms = len(base.sizes()) + sum(count for _, count in families(x, base, self))
        rows = max(len(tuning.grid(base.optimizer)) * self.tuning_rounds, base.rounds) * arms
        stack = base.memory_bytes() * max(1, rows // (base.rounds * len(base.sizes())))
        one_round = self.selection * self.selection_growth ** 2 * example_bytes(x, base)
        return stack + max(base.rounds, self.long_rounds) * one_round + max(BLOCK_BYTES, one_round * 40)


PROTOCOLS = {x.NAME: x.PROTOCOL for x in SCRIPTS.values()}
OWN = {"cnn": Exploration(restarts=6, samples=16, selection=200, selection_growth=3, tuning_rounds=50,
                          long_rounds=200, long_tuning_rounds=20),
       "bool": Exploration(restarts=10, samples=16, selection=500, selection_growth=10, tuning_rounds=20,
                           long_rounds=25, long_tuning_rounds=10)}


def script_of(s: cli.Settings) -> ModuleType:
    return next(x for x in SCRIPTS.values() if type(s) is x.Settings)


def example_bytes(x: ModuleType, s: cli.Settings) -> int:
    """Bytes of one example of the experiment's inputs (a sequence, a point)."""
    inputs, y = x.selection(s, torch.Generator().manual_seed(0), 1, cycle=1).data(0, 1)
    return sum(t[0].numel() * t.element_size() for t in inputs) // y.shape[-1]


# ----------------------------------------------------------------------------- arms and pools

def families(x: ModuleType, s: cli.Settings, o: Exploration) -> list[tuple[str, int]]:
    """Each restarted family and its largest candidate count: as many as --restarts small Naive networks'
    trained parameters buy."""
    unit = x.model(s, WIDE, x.SMALL).trained_params
    return [(f, o.restarts * unit // x.model(s, f, x.SMALL).trained_params) for f in x.FAMILIES if f != HYPER]


def powers_of_two(top: int) -> list[int]:
    """1, 2, 4, ... up to top, and top itself."""
    return sorted({2 ** i for i in range(top.bit_length()) if 2 ** i <= top} | {top})


@dataclass(frozen=True)
class Arm:
    """One thing compared: a family's network of `size`, the best of `candidates` (for SAMPLED: latents)."""
    model: str
    size: int
    candidates: int


def arms(x: ModuleType, s: cli.Settings, o: Exploration, sizes: list[int]) -> list[Arm]:
    """The wide networks of `sizes` (the small one is the best of 1), the best of k of each family, the
    HyperNetwork at z = 0 and its best of k latents."""
    out = [Arm(WIDE, n, 1) for n in sizes if n != x.SMALL]
    out += [Arm(f, x.SMALL, k) for f, top in families(x, s, o) for k in range(1, top + 1)]
    return out + [Arm(HYPER, x.SMALL, 1)] + [Arm(SAMPLED, x.SMALL, k) for k in powers_of_two(o.samples)]


@dataclass(frozen=True)
class Pool:
    """`count` candidates per round of one family and size, trained at one rate (a hypernetwork: one
    trained network, whose z = 0 and sampled networks are the candidates)."""
    family: str
    size: int
    count: int
    lr: float
    momentum: float


def pools_of(entries: list[tuple[Arm, tuple[float, float]]]) -> list[Pool]:
    """The pool that serves each (arm, rates): arms of one trained family and size at the same rates share one
    pool of their largest k (the best of 3 is chosen among the first 3 of the 6 candidates; a HyperNetwork's
    z = 0 and sampled latents come from one trained network)."""
    largest: dict[tuple, int] = {}
    for arm, (lr, m) in entries:
        k = (trained_family(arm), arm.size, lr, m)
        largest[k] = max(largest.get(k, 1), 1 if trained_family(arm) == HYPER else arm.candidates)
    return [Pool(trained_family(a), a.size, largest[(trained_family(a), a.size, lr, m)], lr, m) for a, (lr, m) in entries]


def trained_family(arm: Arm) -> str:
    return HYPER if arm.model == SAMPLED else arm.model


# ----------------------------------------------------------------------------- training and scoring

@dataclass
class Trained:
    """Pools trained and scored: each pool's (rounds, C) scores and diverged flags on each named set, and
    (where a test set was given) each candidate column's test-set measurements, one tuple per round."""
    columns: dict[Pool, slice]
    scores: dict[str, Tensor]
    diverged: dict[str, Tensor]
    tests: list[list[tuple]] = dataclasses.field(default_factory=list)

    def of(self, pool: Pool, on: str) -> tuple[Tensor, Tensor]:
        return self.scores[on][:, self.columns[pool]], self.diverged[on][:, self.columns[pool]]


def train_pools(x: ModuleType, s: cli.Settings, o: Exploration, pools: list[Pool], gen: torch.Generator, bar
                ) -> tuple[engine.Stack, dict[Pool, slice]]:
    """Every pool of one class in one stack, each candidate a group of `s.rounds` rounds at its pool's rates;
    a hypernetwork's groups become its generated networks (z = 0, then --samples latents)."""
    templates = [x.model(s, p.family, p.size) for p in pools for _ in range(p.count)]
    per = lambda key: [getattr(p, key) for p in pools for _ in range(p.count)]
    stack = x.train(s, gen, templates, bar, lr=per("lr"), momentum=per("momentum"))
    if pools[0].family == HYPER:
        stack = generated(stack, o.samples, gen)
    widths = [1 + o.samples if p.family == HYPER else p.count for p in pools]
    starts = np.cumsum([0] + widths).tolist()
    return stack, {p: slice(a, b) for p, a, b in zip(pools, starts, starts[1:])}


def generated(stack: engine.Stack, samples: int, gen: torch.Generator) -> engine.Stack:
    """The networks each trained hypernetwork generates: per group, at z = 0 and at `samples` latents z ~ N(0, I),
    each a group of the group's rounds (so that round r of every candidate meets round r's data)."""
    hyper = stack.groups[0].template
    params, groups = [], []
    for g in stack.groups:
        rounds = g.stop - g.start
        own = stack.group_params(g)
        z = torch.cat([torch.zeros(rounds, Z_DIM, device=gen.device), data.latents((samples * rounds,), gen, Z_DIM)])
        tiled = {k: v.repeat(1 + samples, *([1] * (v.dim() - 1))) for k, v in own.items()}
        params.append(hyper.stacked_generate(tiled, z))
    template = hyper.generate(torch.zeros(Z_DIM, device=gen.device))
    rounds = stack.groups[0].stop - stack.groups[0].start
    groups = [engine.Group(template, i * rounds, (i + 1) * rounds) for i in range(len(stack.groups) * (1 + samples))]
    joined = {k: torch.cat([p[k] for p in params]) for k in params[0]}
    return engine.Stack(joined, {k: torch.zeros_like(v) for k, v in joined.items()}, groups)


@torch.no_grad()
def scored(stack: engine.Stack, scorer: engine.Scorer) -> tuple[Tensor, Tensor]:
    """Scores and diverged flags (rounds, groups) of a stack whose groups each hold the same rounds: the data
    of a block of rounds is drawn once and met by every group (as `engine.evaluate` scores, by round)."""
    rounds = stack.groups[0].stop - stack.groups[0].start
    probe, y = scorer.data(0, 1)
    per_round = sum(t[0].numel() * t.element_size() for t in probe) * (2 + max(
        sum(p.numel() for p in g.template.parameters()) for g in stack.groups))
    block = max(1, min(rounds, BLOCK_BYTES // per_round))
    scores = torch.empty(rounds, len(stack.groups), device=y.device)
    diverged = torch.empty(rounds, len(stack.groups), dtype=torch.bool, device=y.device)
    for start in range(0, rounds, block):
        stop = min(start + block, rounds)
        inputs, y = scorer.data(start, stop)
        for c, group in enumerate(stack.groups):
            out = engine.logits(stack, group, inputs, scorer.shared, start, stop)
            scores[start:stop, c] = scorer.metric(out, y)
            finite = torch.isfinite(out).all(-1)
            for p in stack.group_params(group, start, stop).values():
                finite &= torch.isfinite(p).flatten(1).all(1)
            diverged[start:stop, c] = ~finite
    return scores, diverged


def train_and_score(x: ModuleType, s: cli.Settings, o: Exploration, pools: list[Pool], sets: dict[str, engine.Scorer],
                    gen: torch.Generator, bar, stack_of, only: dict[str, set[Pool]] | None = None, test=None
                    ) -> Trained:
    """Train the pools, one stack per value of `stack_of(pool)` (a class, or a class and a size), and score
    every candidate on every set; a set named in `only` scores only those pools' candidates (others: NaN);
    with `test` (an experiment's `test_set`), every candidate's test-set measurements too."""
    columns, scores, diverged, offset, tests = {}, {n: [] for n in sets}, {n: [] for n in sets}, 0, []
    unique = list(dict.fromkeys(pools))
    for kind in dict.fromkeys(map(stack_of, unique)):
        members = [p for p in unique if stack_of(p) == kind]
        stack, cols = train_pools(x, s, o, members, gen, bar)
        for name, scorer in sets.items():
            wanted = [i for p, c in cols.items() if only is None or name not in only or p in only[name]
                      for i in range(c.start, c.stop)]
            a = torch.full((s.rounds, len(stack.groups)), float("nan"), device=gen.device)
            b = torch.zeros((s.rounds, len(stack.groups)), dtype=torch.bool, device=gen.device)
            if wanted:
                a[:, wanted], b[:, wanted] = scored(engine.Stack(stack.params, stack.masks,
                                                                 [stack.groups[i] for i in wanted]), scorer)
            scores[name].append(a)
            diverged[name].append(b)
        if test is not None:
            measured = test(stack)
            tests += [measured[g.start:g.stop] for g in stack.groups]
        columns.update({p: slice(c.start + offset, c.stop + offset) for p, c in cols.items()})
        offset += len(stack.groups)
    return Trained(columns, {n: torch.cat(v, 1) for n, v in scores.items()},
                   {n: torch.cat(v, 1) for n, v in diverged.items()}, tests)


def pick(selection: Tensor, k: int) -> Tensor:
    """Per round, the index of the candidate, among the first k, best on the selection scores (R, C); a tie
    goes to the earlier one."""
    return selection[:, :k].argmax(1)


def best_of(selection: Tensor, validation: Tensor, k: int) -> Tensor:
    """Per round, the validation score of the candidate, among the first k, best on the selection set."""
    return validation.gather(1, pick(selection, k)[:, None])[:, 0]


def candidates_of(arm: Arm, scores):
    """The columns an arm chooses among (of a (rounds, C) tensor or a list of C columns): a hypernetwork's
    z = 0 network, or its sampled ones."""
    columns = (lambda c: scores[:, c]) if isinstance(scores, Tensor) else (lambda c: scores[c])
    if arm.model == HYPER:
        return columns(slice(0, 1))
    return columns(slice(1, None)) if arm.model == SAMPLED else scores


# ----------------------------------------------------------------------------- tuning

def tune(x: ModuleType, s: cli.Settings, o: Exploration, wanted: list[Arm], rounds: int, gen: torch.Generator, bar
         ) -> tuple[dict[Arm, tuning.Choice], list[report.Row]]:
    """Each arm's rates: every grid point trains its pools on `rounds` fresh tuning rounds; a best of k picks on
    one fresh selection set and is judged on another; tuning.choose takes the best point by --criterion (ties:
    the better mean, then the smaller rate, then the smaller momentum). Nothing here sees a validation set."""
    t = dataclasses.replace(s, rounds=rounds)
    points = tuning.grid(s.optimizer)
    entries = [(arm, point) for arm in wanted for point in points]
    pools = dict(zip(entries, pools_of(entries)))
    sets = {n: x.selection(t, gen, o.selection, cycle=rounds) for n in ("pick", "judge")}
    trained = train_and_score(x, t, o, list(pools.values()), sets, gen, bar, lambda p: (p.family == HYPER, p.size))
    chosen, rows = {}, []
    for arm in [a for a in wanted if not restarted(a)]:
        table = {}
        for point in points:
            picks, judged = (candidates_of(arm, trained.of(pools[(arm, point)], n)[0]) for n in ("pick", "judge"))
            values = best_of(picks, judged, arm.candidates) if arm.model == SAMPLED else judged.t().reshape(-1)
            table[point] = values.cpu().numpy()
            rows += rows_for(x, s, o, arm, values, torch.zeros_like(values, dtype=torch.bool), point, "grid")
        chosen[arm] = tuning.choose(table, o.criterion, s.solved_at)
    for arm in filter(restarted, wanted):
        chosen[arm] = chosen[Arm(arm.model, arm.size, 1)]
    return chosen, rows


def restarted(arm: Arm) -> bool:
    """A best of k > 1 independently trained networks: it trains at the rate chosen for one of them. Every
    candidate trains on its own, so (with the choice made on a selection set) the best of k solves a round with
    about 1 - (1 - p)^k, which grows with the one network's p: the rate best for one is best for every k. Each
    candidate of the tuning pool counts as a tuning round of the one network (k times the rounds a choice per k
    would have, and no choice among points that all solve every tuning round)."""
    return arm.model not in (HYPER, SAMPLED) and arm.candidates > 1


# ----------------------------------------------------------------------------- budgets

def forward_macs(x: ModuleType, s: cli.Settings, net: torch.nn.Module) -> int:
    """Multiply-adds of one forward pass of `net` on one example (counted by torch; the tests check them
    against search.cnn_forward_macs and search.bool_forward_macs)."""
    from torch.utils.flop_counter import FlopCounterMode
    inputs, _ = x.selection(s, torch.Generator().manual_seed(0), 1, cycle=1).data(0, 1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.cpu()(inputs[0][0][:1].cpu())
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Budget:
    """What an arm spends: trained parameters (all candidates), the final network's size, the multiply-adds of
    training and of choosing (forward and backward, search.py's convention), and the examples it sees."""
    trained_params: int
    final_size: int
    train_macs: int
    examples: int


@functools.lru_cache(maxsize=None)
def budget(x: ModuleType, s: cli.Settings, o: Exploration, arm: Arm) -> Budget:
    """k candidates each take s.steps gradient steps on x.BATCH examples; a best of k > 1 also scores its k
    candidates on the selection set (seen once). A hypernetwork trains once; its k latents are scored."""
    net = x.model(s, trained_family(arm), arm.size)
    final = net.generate(torch.zeros(Z_DIM)) if arm.model in (HYPER, SAMPLED) else net
    trained_copies = 1 if arm.model in (HYPER, SAMPLED) else arm.candidates
    step = search.gradient_step_macs(forward_macs(x, s, net), x.BATCH)
    selection_examples = x.selection(s, torch.Generator().manual_seed(0), o.selection, cycle=1).data(0, 1)[1].shape[-1]
    choosing = arm.candidates > 1
    macs = trained_copies * s.steps * step
    macs += choosing * arm.candidates * search.evaluation_macs(forward_macs(x, s, final), selection_examples)
    return Budget(trained_copies * net.trained_params, final.final_size, macs,
                  trained_copies * s.steps * x.BATCH + choosing * selection_examples)


# ----------------------------------------------------------------------------- rows

def rows_for(x: ModuleType, s: cli.Settings, o: Exploration, arm: Arm, scores: Tensor, diverged: Tensor,
             rates: tuple[float, float], label: str, selection: int | None = None, chosen_on: str = "selection",
             measured: list[tuple] | None = None) -> list[report.Row]:
    """One row per round of an arm (`measured`: each round's test-set measurements of its chosen network)."""
    b = budget(x, s, o, arm)
    keys = (("steps", s.steps), ("candidates", arm.candidates), ("selection", selection or o.selection),
            ("chosen_on", chosen_on), ("rates", label), ("lr", float(rates[0])), ("momentum", float(rates[1])),
            ("train_macs", b.train_macs), ("examples", b.examples))
    own = measured or [()] * len(scores)
    return [report.Row(arm.model, arm.size, b.trained_params, r, v, d, (*keys, *own[r]))
            for r, (v, d) in enumerate(zip(scores.tolist(), diverged.tolist()))]


def reported(x: ModuleType, s: cli.Settings, o: Exploration, rated: dict[str, dict[Arm, tuple[float, float]]],
             gen: torch.Generator, bar, noise_sizes: list[int]) -> tuple[list[report.Row], list[report.Row]]:
    """Train every arm at its rates (each label's: tuned, protocol) afresh, in one stack per class, pick on a
    fresh selection set, score on per-round validation sets and measure on the experiment's test set; and the
    selection-noise rows: the largest best of k of the wide family chosen on fresh selection sets of
    `noise_sizes` and by the oracle, and the largest wide network for reference."""
    pools = {label: dict(zip(at, pools_of(list(at.items())))) for label, at in rated.items()}
    sizes = list(dict.fromkeys([o.selection, *noise_sizes]))
    sets = {"validation": x.validation(s, gen, cycle=s.rounds),
            **{size: x.selection(s, gen, size, cycle=s.rounds) for size in sizes}}
    chosen_by_more = {pools[label][arm] for label, at in rated.items() for arm in noisy(at) if arm.candidates > 1}
    trained = train_and_score(x, s, o, [p for by in pools.values() for p in by.values()], sets, gen, bar,
                              lambda p: p.family == HYPER, {size: chosen_by_more for size in sizes[1:]},
                              x.test_set(s, gen))
    main, noise = [], []
    for label, at in rated.items():
        for arm, rates in at.items():
            val, div = (candidates_of(arm, t) for t in trained.of(pools[label][arm], "validation"))
            choose = lambda on, k=arm.candidates: pick(candidates_of(arm, trained.of(pools[label][arm], on)[0]), k)
            at_pick = lambda chosen: (val.gather(1, chosen[:, None])[:, 0], div.gather(1, chosen[:, None])[:, 0])
            tests = candidates_of(arm, trained.tests[trained.columns[pools[label][arm]]])
            chosen = choose(o.selection)
            main += rows_for(x, s, o, arm, *at_pick(chosen), rates, label,
                             measured=[tests[c][r] for r, c in enumerate(chosen.tolist())])
            if arm in noisy(at) and noise_sizes:
                for size in sizes:
                    noise += rows_for(x, s, o, arm, *at_pick(choose(size) if arm.candidates > 1 else
                                                            torch.zeros_like(val[:, 0], dtype=torch.long)),
                                      rates, label, size)
                    if arm.candidates > 1:
                        noise += rows_for(x, s, o, arm, *at_pick(pick(val, arm.candidates)), rates, label, size,
                                          "validation")
    return main, noise


def noisy(at) -> list[Arm]:
    """The arms of the selection-noise figure: the wide family's largest best of k and, for reference, the
    largest wide network."""
    top = lambda key: max((a for a in at if a.model == WIDE), key=key)
    return [top(lambda a: (a.candidates == 1, a.size)), top(lambda a: a.candidates)]


def length_settings(s: cli.Settings, o: Exploration, i: int) -> tuple[cli.Settings, int, list[int]]:
    """Settings, tuning rounds and wide sizes of the i-th training length."""
    if i == 0:
        return s, o.tuning_rounds, list(s.sizes())
    longer = dataclasses.replace(s, steps=s.steps * o.length_growth ** i, rounds=o.long_rounds)
    return longer, o.long_tuning_rounds, [max(s.sizes())]


def run(x: ModuleType, s: cli.Settings, o: Exploration, gen: torch.Generator, record: dict
        ) -> dict[str, list[report.Row]]:
    """Every length: tune every arm, train and report it at its rates (and, at the protocol's length, at the
    protocol's); the chosen rates and every arm's budget go into `record` (the JSON)."""
    main, noise, grid = [], [], []
    record.update(chosen={}, budgets={})
    with report.bar(sum(length_settings(s, o, i)[0].steps for i in range(o.lengths)) * 4, f"exploration ({x.NAME})"
                    ) as bar:
        for i in range(o.lengths):
            si, tuning_rounds, sizes = length_settings(s, o, i)
            wanted = arms(x, si, o, sizes)
            chosen, rows = tune(x, si, o, wanted, tuning_rounds, gen, bar)
            grid += rows
            rated = {TUNED: {a: (c.lr, c.momentum) for a, c in chosen.items()}}
            if i == 0:
                rated[PROTOCOL_RATES] = {a: (s.lr, s.momentum) for a in wanted}
            noise_sizes = [o.selection * o.selection_growth ** j for j in range(3)] if i == 0 else []
            m, n = reported(x, si, o, rated, gen, bar, noise_sizes)
            main, noise = main + m, noise + n
            record["chosen"][str(si.steps)] = {name(a): dataclasses.asdict(c) for a, c in chosen.items()}
            record["budgets"][str(si.steps)] = {name(a): dataclasses.asdict(budget(x, si, o, a)) for a in wanted}
    return {f"exploration_{x.NAME}": main, f"exploration_selection_{x.NAME}": noise,
            f"exploration_tuning_{x.NAME}": grid}


def name(arm: Arm) -> str:
    """How an arm reads: "Naive(7)", "best of 6 Naive(1)", "HyperNetwork, best of 64 sampled latents"."""
    if arm.model == SAMPLED:
        return f"{HYPER}, best of {arm.candidates} sampled latents"
    if arm.model == HYPER:
        return f"{HYPER}, z = 0"
    return f"best of {arm.candidates} {arm.model}({arm.size})" if arm.candidates > 1 else f"{arm.model}({arm.size})"


def arm_of(r) -> Arm:
    """The arm of a row or a summary (its model, sweep and `candidates` key column)."""
    values = dict(r.extra) if isinstance(r, report.Row) else dict(zip(KEYS, r.keys))
    return Arm(r.model, r.sweep, values["candidates"])


def key(r, column: str):
    return (dict(r.extra) if isinstance(r, report.Row) else dict(zip(KEYS, r.keys)))[column]


# ----------------------------------------------------------------------------- notes

def groups(rows: list[report.Row]) -> dict[tuple, np.ndarray]:
    """Scores in round order by (arm, steps, rates, selection, chosen_on), through report.by_model."""
    series = lambda r: (arm_of(r), key(r, "steps"), key(r, "rates"), key(r, "selection"), key(r, "chosen_on"))
    return {name: next(iter(by.values())) for name, by in report.by_model(rows, series).items()}


def first_row(rows: list[report.Row]) -> dict[tuple, report.Row]:
    out = {}
    for r in rows:
        out.setdefault((arm_of(r), key(r, "steps"), key(r, "rates")), r)
    return out


def comparisons(x: ModuleType, o: Exploration) -> cli.Notes:
    """Per length and rates: width minus each family's best of its largest k at equal trained parameters,
    restarts minus the HyperNetwork's best latents at equal k, the best latents minus z = 0 (paired: every
    arm of a round meets that round's validation set), independent tries 1 - (1 - p)^k from the best of 1;
    each with its rates and its budget three ways."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        g, first = groups(rows), first_row(rows)
        lines = ["differences a - b, paired by round (each round's own validation set), 95 % bootstrap; "
                 "rates chosen by tuning.choose on tuning rounds (ties: better mean, smaller lr, smaller momentum)"]
        for steps, label in dict.fromkeys((key(r, "steps"), key(r, "rates")) for r in rows):
            here = {a: first[(a, st, lb)] for a, st, lb in first if st == steps and lb == label}
            scores = {a: g[(a, steps, label, key(r, "selection"), "selection")] for a, r in here.items()}
            lines.append(f"{steps} steps, {label} rates:")
            for a, r in here.items():
                lines.append(f"  {name(a)}: lr {key(r, 'lr'):g}, momentum {key(r, 'momentum'):g}; mean "
                             f"{scores[a].mean():.4f}, solved {100 * (scores[a] >= solved_at).mean():.1f} %; budget: "
                             f"{r.params} trained parameters, {budget_text(r)}")
            for a, b in pairs(list(here)):
                lines.append(f"  {name(a)} - {name(b)}: {report.compare(scores[a], scores[b], True, solved_at)}; "
                             f"{ratio_text(here[a], here[b])}")
            for a in here:
                if a.model not in (HYPER, SAMPLED) and a.candidates > 1 and Arm(a.model, a.size, 1) in scores:
                    p = (scores[Arm(a.model, a.size, 1)] >= solved_at).mean()
                    if a.candidates == max(b.candidates for b in here if b.model == a.model):
                        lines.append(f"  independent tries 1 - (1 - p)^{a.candidates} from one {a.model}({a.size}) at "
                                     f"these rates: {100 * (1 - (1 - p) ** a.candidates):.1f} %")
        return "\n".join(lines)
    return notes


def pairs(present: list[Arm]) -> list[tuple[Arm, Arm]]:
    """Width against each family's largest best of k (equal trained parameters) and against the HyperNetwork
    (z = 0 and its best latents: about as many trained parameters); restarts against the sampled latents at the
    largest k both have (equal final size, as many candidates); the best latents against z = 0."""
    largest = lambda model: max((a for a in present if a.model == model), key=lambda a: a.candidates, default=None)
    wide = max((a for a in present if a.model == WIDE and a.candidates == 1), key=lambda a: a.size, default=None)
    restarted = [largest(m) for m in dict.fromkeys(a.model for a in present if a.candidates > 1 and a.model != SAMPLED)]
    sampled, zero = largest(SAMPLED), largest(HYPER)
    out = [(wide, b) for b in [*restarted, zero, sampled] if b is not None and b != wide]
    for b in restarted:
        same = max((a for a in present if a.model == SAMPLED and a.candidates <= b.candidates),
                   key=lambda a: a.candidates, default=None)
        out += [(b, same)] if same is not None else []
    out += [(sampled, zero)] if sampled is not None and zero is not None else []
    return [(a, b) for a, b in out if a is not None]


def budget_text(r: report.Row) -> str:
    return f"{key(r, 'train_macs'):.3g} multiply-adds, {key(r, 'examples'):,} examples seen"


def ratio_text(a: report.Row, b: report.Row) -> str:
    """How the two budgets differ, three ways: a / b."""
    ratio = lambda u, v: f"{u / v:.2f}x" if v else "-"
    return (f"budget a/b: trained parameters {ratio(a.params, b.params)}, compute "
            f"{ratio(key(a, 'train_macs'), key(b, 'train_macs'))}, data {ratio(key(a, 'examples'), key(b, 'examples'))}")


def selection_comparisons(x: ModuleType) -> cli.Notes:
    """Per length and rates, the largest k of each family chosen on each selection size and by the oracle,
    against the largest wide network (paired by round)."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        g = groups(rows)
        lines = [f"selection noise at the largest k ({x.SELECTION_UNIT}), paired by round, 95 % bootstrap:"]
        for (arm, steps, label, size, on), scores in g.items():
            if on != "selection" or arm.model == WIDE and arm.candidates == 1:
                continue
            wide = [k for k in g if k[0].model == WIDE and k[0].candidates == 1 and k[1:4] == (steps, label, size)]
            oracle = g[(arm, steps, label, size, "validation")]
            text = f"  {steps} steps, {label}, {name(arm)} on {size}: solved {100 * (scores >= solved_at).mean():.1f} %"
            text += f"; oracle - chosen: {report.compare(oracle, scores, True, solved_at)}"
            if wide and arm.model != HYPER:
                top = max(wide, key=lambda k: k[0].size)
                text += f"; {name(top[0])} - oracle: {report.compare(g[top], oracle, True, solved_at)}"
            lines.append(text)
        return "\n".join(lines)
    return notes


def tuning_notes(criterion: str) -> cli.Notes:
    """Each arm's chosen point by --criterion with how firmly its tuning rounds make it (tuning.firmness), and
    where the solved-share and the mean criteria choose differently (from the grid rows)."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        by: dict[tuple, dict[tuple, np.ndarray]] = {}
        for (arm, steps, point), scores in report.by_model(
                rows, lambda r: (arm_of(r), key(r, "steps"), (key(r, "lr"), key(r, "momentum")))).items():
            by.setdefault((arm, steps), {})[point] = next(iter(scores.values()))
        firm = [f"chosen by the {criterion} criterion ({tuning.FIRMNESS}):"]
        differ = ["rates by criterion on the tuning rounds (solved share / mean score), where they differ:"]
        for (arm, steps), table in by.items():
            c = tuning.choose(table, criterion, solved_at)
            firm.append(f"  {steps} steps, {name(arm)}: lr {c.lr:g} m {c.momentum:g} "
                        f"({tuning.firmness_text(tuning.firmness(table, criterion, solved_at), criterion)})")
            solved, mean = (tuning.choose(table, k, solved_at) for k in ("solved", "mean"))
            edge = " (at the grid's edge)" if solved.edge else ""
            if (solved.lr, solved.momentum) != (mean.lr, mean.momentum):
                differ.append(f"  {steps} steps, {name(arm)}: solved -> lr {solved.lr:g} m {solved.momentum:g}{edge}; "
                              f"mean -> lr {mean.lr:g} m {mean.momentum:g}")
        return "\n".join(firm + differ)
    return notes


# ----------------------------------------------------------------------------- figures

def series(x: ModuleType, r) -> str:
    """The line a summary belongs to: one wide network of growing size, or the best of growing k."""
    arm = arm_of(r)
    if arm.model == WIDE and arm.candidates == 1 and arm.size != x.SMALL:
        what = f"one wide {WIDE}(n)"
    elif arm.model == SAMPLED:
        what = f"{HYPER}, best of k sampled latents"
    elif arm.model == HYPER:
        what = name(arm)
    else:
        what = f"best of k {arm.model}({arm.size})"
    return f"{what}, {key(r, 'rates')} rates"


def figure(x: ModuleType, o: Exploration, s: cli.Settings) -> report.Figure:
    """Against the trained parameters: at the protocol's rates and length (the write-up's setting), then tuned
    at each length; against the candidates tried, at equal final size."""
    steps = lengths(s, o)
    at = lambda st, rates: lambda m: key(m, "steps") == st and key(m, "rates") == rates and m.model != SAMPLED
    views = [report.View("trained parameters (all candidates)", lambda m: m.params, at(steps[0], PROTOCOL_RATES),
                         f"{steps[0]} steps, protocol rates")]
    views += [report.View("trained parameters (all candidates)", lambda m: m.params, at(st, TUNED),
                          f"{st} steps, tuned rates") for st in steps]
    views.append(report.View("candidates tried (k); the final network is small", lambda m: key(m, "candidates"),
                             lambda m: key(m, "steps") == steps[0] and key(m, "rates") == TUNED
                             and not (m.model == WIDE and m.sweep != x.SMALL),
                             f"{steps[0]} steps, tuned, equal final size", log_x=2))
    return with_rates(report.Figure(
        name=f"exploration_{x.NAME}", title="width or restarts", ylabel=x.FIGURE.ylabel,
        solved_label=x.FIGURE.solved_label, views=tuple(views), percent=x.FIGURE.percent,
        models=(*x.FAMILIES, SAMPLED), columns=(*COLUMNS, *x.TEST_COLUMNS)), lambda m: series(x, m))


def selection_figure(x: ModuleType, o: Exploration, s: cli.Settings) -> report.Figure:
    """The largest k chosen on growing selection sets and the oracle bound, per length; the largest wide network
    for reference."""
    chosen = lambda m: f"{series(x, m)}{', oracle bound' if key(m, 'chosen_on') == 'validation' else ''}"
    first = lengths(s, o)[0]
    views = (report.View(f"selection set ({x.SELECTION_UNIT}); k at its largest", lambda m: key(m, "selection"),
                         lambda m: key(m, "steps") == first, f"{first} steps", log_x=10),)
    return with_rates(report.Figure(
        name=f"exploration_selection_{x.NAME}", title="best of k chosen on more data",
        ylabel=x.FIGURE.ylabel, solved_label=x.FIGURE.solved_label, views=views, percent=x.FIGURE.percent,
        models=(*x.FAMILIES, SAMPLED), columns=COLUMNS, table=False), chosen)


def tuning_figure(x: ModuleType, o: Exploration, s: cli.Settings) -> report.Figure:
    """The grid of the headline arms on their tuning rounds (judged on selection sets), per length."""
    headline = {Arm(WIDE, max(s.sizes()), 1), Arm(WIDE, x.SMALL, 1), Arm(HYPER, x.SMALL, 1)}
    views = tuple(report.View("learning rate", lambda m: key(m, "lr"),
                              lambda m, st=st: key(m, "steps") == st and arm_of(m) in headline,
                              f"{st} steps, tuning rounds", log_x=10,
                              series=lambda m: f"{name(arm_of(m))}, momentum {key(m, 'momentum'):g}")
                  for st in lengths(s, o))
    return report.Figure(name=f"exploration_tuning_{x.NAME}", title="the grid",
                         ylabel=x.FIGURE.ylabel, solved_label=x.FIGURE.solved_label, views=views,
                         percent=x.FIGURE.percent, models=(*x.FAMILIES, SAMPLED), columns=COLUMNS, table=False)


def lengths(s: cli.Settings, o: Exploration) -> list[int]:
    return [length_settings(s, o, i)[0].steps for i in range(o.lengths)]


def with_rates(fig: report.Figure, series_of) -> report.Figure:
    """The figure drawn by report.plot, each line's legend saying its rates (lr / momentum, per point in x order
    where they differ)."""
    def render(summaries: list[report.Summary], rows, solved_at: float):
        views = tuple(dataclasses.replace(v, series=labelled(v, [m for m in summaries if v.keep(m)], series_of))
                      for v in fig.views)
        return report.plot(summaries, dataclasses.replace(fig, views=views, render=None), solved_at)
    return dataclasses.replace(fig, render=render)


def labelled(view: report.View, kept: list[report.Summary], series_of):
    lines: dict[str, list[report.Summary]] = {}
    for m in kept:
        lines.setdefault(series_of(m), []).append(m)
    text = {}
    for line, members in lines.items():
        spans = []
        for c in ("lr", "momentum"):
            values = sorted({key(m, c) for m in members})
            spans.append(f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g}..{values[-1]:g}")
        text[line] = f"{line}: lr {spans[0]}, m {spans[1]}"
    return lambda m: text.get(series_of(m), series_of(m))


def job(x: ModuleType, s: cli.Settings, o: Exploration) -> cli.Job:
    record: dict = {}
    figures = (figure(x, o, s), selection_figure(x, o, s), tuning_figure(x, o, s))
    return cli.Job(figures, s, x.PROTOCOL, lambda gen: run(x, s, o, gen, record),
                   notes={figures[0].name: comparisons(x, o), figures[1].name: selection_comparisons(x),
                          figures[2].name: tuning_notes(o.criterion)},
                   study=o, study_protocol=OWN[x.NAME], record=record)


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS, OWN)


def jobs(args) -> list[cli.Job]:
    return [job(SCRIPTS[e], s, o) for e, (s, o) in cli.study_settings(args, PROTOCOLS, OWN).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
