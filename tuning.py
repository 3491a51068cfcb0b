"""Tuning that every study shares: a grid of learning rates (and momenta), trained in one stack, each arm's
values chosen on tuning rounds scored on a selection set, by the criterion its comparison reports.

An *arm* is one thing a study compares (a width, a best-of-k, an optimizer, a surrogate): a network template
and the experiment settings it trains at. Its grid points are trained together in one stack (one group per
grid point, per-round learning rate and momentum), scored on fresh selection data, and the point with the
best criterion is chosen. Points the tuning rounds cannot tell apart at all (equal criterion and mean score:
several points solving every round perfectly) race once on more fresh rounds before the choice, so that a
tie-break towards the smallest rate does not decide among them on no evidence (where some still tie after the
race, it decides among those). Nothing here looks at the validation set or at the rounds a
study reports.
"""
import copy
import dataclasses
import zlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch

import report

LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)     # about a factor sqrt(10) apart
MOMENTUM_GRID = (0.0, 0.5, 0.9)
WITH_MOMENTUM = ("sgd", "rmsprop")                                   # the optimizers that take one
CRITERIA = ("solved", "mean")


@dataclass(frozen=True)
class Choice:
    lr: float
    momentum: float
    value: float          # the criterion at the chosen point, on the tuning rounds
    edge: bool            # the learning rate sits at an end of the grid: the best may lie outside it


def grid(optimizer: str, lrs: tuple[float, ...] = LR_GRID) -> list[tuple[float, float]]:
    """The (learning rate, momentum) points tried: momentum only for the optimizers that have one."""
    momenta = MOMENTUM_GRID if optimizer in WITH_MOMENTUM else (0.0,)
    return [(lr, m) for lr in lrs for m in momenta]


def criterion_value(scores: np.ndarray, criterion: str, solved_at: float) -> float:
    """The share of rounds solved, or the mean score."""
    return float((scores >= solved_at).mean()) if criterion == "solved" else float(scores.mean())


def choose(scores: dict[tuple[float, float], np.ndarray], criterion: str, solved_at: float) -> Choice:
    """The grid point with the best criterion. Ties (a flat criterion: many points solving every tuning
    round, say) go to the better mean score, then to the smaller learning rate, then to the smaller momentum:
    the most conservative of the equally good."""
    def rank(point: tuple[float, float]) -> tuple:
        lr, momentum = point
        return (criterion_value(scores[point], criterion, solved_at), float(scores[point].mean()), -lr, -momentum)
    best = max(scores, key=rank)
    lrs = sorted({lr for lr, _ in scores})
    return Choice(best[0], best[1], criterion_value(scores[best], criterion, solved_at),
                  len(lrs) > 1 and best[0] in (lrs[0], lrs[-1]))


FIRMNESS_RESAMPLES = 2000
CONTENDER = 0.05          # a point chosen in at least this share of the redraws contends with the choice


@dataclass(frozen=True)
class Firmness:
    same: float           # share of redraws of the tuning rounds in which `choose` picks the same point
    gap: float            # the criterion's largest lead, on the tuning rounds as drawn, of the chosen point over
                          # a contender (0: every contender did as well; the tie-break chose)
    tied: int = 1         # points `tied` with the choice (equal criterion and mean): above 1, the tie-break chose
                          # among them, and the same choice in every redraw says nothing about the rounds


def picks(scores: dict[tuple[float, float], np.ndarray], criterion: str, solved_at: float,
          resamples: int = FIRMNESS_RESAMPLES, seed: int = 0) -> dict[tuple[float, float], float]:
    """How often `choose`, by the same criterion and ties, picks each grid point over bootstrap redraws of
    every point's tuning rounds (each point's rounds are networks of their own: redrawn apart)."""
    points = list(scores)
    rng = np.random.default_rng(seed)
    crit, mean = [], []
    for p in points:
        drawn = scores[p][rng.integers(0, len(scores[p]), (resamples, len(scores[p])))]
        crit.append((drawn >= solved_at).mean(1) if criterion == "solved" else drawn.mean(1))
        mean.append(drawn.mean(1))
    order = np.array([sorted(points, key=lambda q: (-q[0], -q[1])).index(p) for p in points])   # ties: smaller lr, m
    static = np.broadcast_to(order[:, None], (len(points), resamples))
    best = np.lexsort((static, np.array(mean), np.array(crit)), axis=0)[-1]
    return {p: float((best == i).mean()) for i, p in enumerate(points)}


def firmness(scores: dict[tuple[float, float], np.ndarray], criterion: str, solved_at: float,
             resamples: int = FIRMNESS_RESAMPLES, seed: int = 0) -> Firmness:
    """How firmly the tuning rounds make `choose`'s choice. `same` near 1: another tuning draw would choose
    the same point. Well below 1 with a `gap` near 0: the contenders did as well as the choice on the tuning
    rounds (a flat optimum: which of them is chosen matters little). Well below 1 with a large gap: the rate an
    arm reports at hinges on its tuning draw, a variation no interval on the reported rounds includes. Points
    `tied` with the choice are redrawn alike (every round perfect, say), so `same` cannot see them: `tied`
    counts them. After a race, all of this is among the points that raced."""
    scores = contenders(scores)
    c = choose(scores, criterion, solved_at)
    shares = picks(scores, criterion, solved_at, resamples, seed)
    value = lambda p: criterion_value(scores[p], criterion, solved_at)
    rivals = [p for p, share in shares.items() if share >= CONTENDER and p != (c.lr, c.momentum)]
    return Firmness(shares[(c.lr, c.momentum)], max([c.value - value(p) for p in rivals], default=0.0),
                    len(tied(scores, criterion, solved_at)))


FIRMNESS = (f"how firm: the share of {FIRMNESS_RESAMPLES} bootstrap redraws of the tuning rounds that choose the same "
            f"point; its largest lead on the tuning rounds over another point chosen in at least {CONTENDER:.0%} of "
            f"them; how many points tie with it (equal solved share and mean: the tie-break chose), if any")


def firmness_text(f: Firmness, criterion: str) -> str:
    """`65 %, lead 4 pts[, 3 tied]`: the share of redraws choosing the same point, the lead over the
    contenders, the points tied with it."""
    lead = f"{100 * f.gap:.0f} pts" if criterion == "solved" else f"{f.gap:.3f}"
    return f"{100 * f.same:.0f} %, lead {lead}" + (f", {f.tied} tied" if f.tied > 1 else "")


RACE = 3                  # points the tuning rounds cannot tell apart race on this many times their rounds


def tied(scores: dict[tuple[float, float], np.ndarray], criterion: str, solved_at: float) -> list[tuple[float, float]]:
    """The points equal to `choose`'s choice on the criterion and on the mean score: nothing in the tuning
    rounds tells them apart (several points solving every round perfectly, say), and the smallest rate would
    win by the tie-break alone."""
    c = choose(scores, criterion, solved_at)
    key = lambda v: (criterion_value(v, criterion, solved_at), float(v.mean()))
    return [p for p, v in scores.items() if key(v) == key(scores[(c.lr, c.momentum)])]


def contenders(scores: dict[tuple[float, float], np.ndarray]) -> dict[tuple[float, float], np.ndarray]:
    """The points a choice is made among: those with the most tuning rounds (the race's, where one was run)."""
    most = max(len(v) for v in scores.values())
    return {p: v for p, v in scores.items() if len(v) == most}


def decide(scores: dict[tuple[float, float], np.ndarray], criterion: str, solved_at: float) -> Choice:
    """An arm's choice from all its tuning rounds: `choose` among the contenders (after a race, the points that
    raced, on their first and their race's rounds together); the grid edge is the whole grid's."""
    c = choose(contenders(scores), criterion, solved_at)
    lrs = sorted({lr for lr, _ in scores})
    return dataclasses.replace(c, edge=len(lrs) > 1 and c.lr in (lrs[0], lrs[-1]))


def race_generator(gen: torch.Generator, what: str) -> torch.Generator:
    """A generator of a race's own, from the run's seed and what races (`gen` is not drawn from: a run in which
    nothing races draws exactly what it drew before races existed)."""
    return torch.Generator(gen.device).manual_seed((gen.initial_seed() + zlib.crc32(what.encode())) % 2 ** 63)


@dataclass(frozen=True)
class Arm:
    """One thing a study compares: its rows' model and sweep value, the settings it trains at, its template."""
    model: str
    sweep: int
    settings: object
    template: torch.nn.Module


def tune(script: ModuleType, arms: list[Arm], rounds: int, selection: int, criterion: str, gen: torch.Generator,
         bar, lrs: tuple[float, ...] = LR_GRID) -> tuple[dict[tuple[str, int], Choice], list[report.Row]]:
    """Choose every arm's learning rate and momentum. Arms that share settings (but for their template)
    train in one stack, one group per arm and grid point, `rounds` fresh tuning rounds each, every round
    scored on its own fresh selection set of `selection` pairs / points; an arm's tied points race (`race`).
    Returns each arm's choice, by (model, sweep), and the grid's rows, the races' after the tuning rounds' (key
    columns `lr` and `momentum`)."""
    chosen, rows = {}, []
    by_settings: dict[object, list[Arm]] = {}
    for arm in arms:
        by_settings.setdefault(arm.settings, []).append(arm)
    for s, members in by_settings.items():
        s = dataclasses.replace(s, rounds=rounds)
        points = [(arm, lr, m) for arm in members for lr, m in grid(s.optimizer, lrs)]
        templates = [copy.deepcopy(arm.template) for arm, _, _ in points]    # each group its own: an annealed
        stack = script.train(s, gen, templates, bar,                         # network holds its rounds' progress
                             lr=[lr for _, lr, _ in points], momentum=[m for _, _, m in points])
        scores, diverged = script.selection(s, gen, selection, stack.networks)(stack)
        for (arm, lr, m), group in zip(points, stack.groups):
            keys = (("lr", lr), ("momentum", m))
            rows += report.rows_of(stack, [(arm.model, arm.sweep)], (scores, diverged), keys, groups=[group])
        tables = {arm: {(lr, m): scores[g.start:g.stop].cpu().numpy() for (a, lr, m), g in zip(points, stack.groups)
                        if a is arm} for arm in members}
        rows += race(script, s, tables, selection, criterion, gen, bar)
        for arm, table in tables.items():
            chosen[(arm.model, arm.sweep)] = decide(table, criterion, s.solved_at)
    return chosen, rows


def race(script: ModuleType, s, tables: dict[Arm, dict], selection: int, criterion: str, gen: torch.Generator,
         bar) -> list[report.Row]:
    """Where several points of an arm are `tied`, they race: each trains RACE times its tuning rounds afresh,
    all in one stack (from a generator of the race's own), scored as the tuning rounds were; their scores join
    their tables (in place) and their rows follow the tuning rounds'. F-Race (Birattari et al., GECCO 2002)
    races every candidate until the data separate them; this races only the ones the data cannot order."""
    ties = {arm: tied(table, criterion, s.solved_at) for arm, table in tables.items()}
    entries = [(arm, lr, m) for arm, points in ties.items() if len(points) > 1 for lr, m in points]
    if not entries:
        return []
    rounds = len(next(iter(tables[entries[0][0]].values())))
    r = dataclasses.replace(s, rounds=RACE * rounds)
    rgen = race_generator(gen, repr((s.steps, [(a.model, a.sweep, lr, m) for a, lr, m in entries])))
    stack = script.train(r, rgen, [copy.deepcopy(arm.template) for arm, _, _ in entries], bar,
                         lr=[lr for _, lr, _ in entries], momentum=[m for _, _, m in entries])
    scores, diverged = script.selection(r, rgen, selection, stack.networks)(stack)
    rows = []
    for (arm, lr, m), group in zip(entries, stack.groups):
        tables[arm][(lr, m)] = np.concatenate([tables[arm][(lr, m)], scores[group.start:group.stop].cpu().numpy()])
        rows += [dataclasses.replace(row, round=row.round + rounds) for row in
                 report.rows_of(stack, [(arm.model, arm.sweep)], (scores, diverged), (("lr", lr), ("momentum", m)),
                                groups=[group])]
    return rows
