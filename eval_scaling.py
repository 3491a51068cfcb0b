"""Harder patterns, fairly: how much width does exploration need, and does independent exploration predict it?

If each filter of a wide network were an independent try that finds the pattern with probability p (the
solve rate of a one-filter network at the same step budget), n filters would solve with probability
1 - (1 - p)^n. This study trains Naive(n), n = 1, 2, 4, ... (the powers of two in [--min-filters,
--max-filters]), on families of patterns of growing length (the filters are as long as the pattern), as the
protocol trains experiment 1 but at a learning rate tuned per pattern and filter count, and scored at several
step budgets: --steps, 4x, 16x, ... (--budgets of them, each a checkpoint of one continuous run: a run of B
steps is the first B steps of a longer one), then --extend further budgets (4x each) by a stopping rule: a
round goes on training only while it is not solved on a set of its own (--stop-set pairs, drawn apart from
every other set), so that the budget where more steps no longer move the solved share is reached at the
cost of the rounds that still need it. Tuning: every rate of --rates trains --tuning-rounds fresh
rounds to the largest budget, each judged on a selection set of its own; the rate that solves most of them
is kept (rates equal on it and on the mean score first race on 3x the tuning rounds afresh, tuning.race;
then ties: the better mean, then the smaller rate; tuning.choose). The protocol's own rate at its own
budget (--steps) is run beside, as the write-up's setting. Each pattern runs from a seed of its own, and
patterns run side by side in as many processes as the CPU's threads allow. Families:
  inside (default): 101, 1001, 10001, ...: the 1s at both ends, the don't-cares inside (like 1101), so
      every placement of the pattern lies wholly inside the sequence and every window of it is visible
      to an unpadded filter;
  three: 111, 1101, 10101, 101001, 1001001, ...: a third 1 in the middle (length 4 is the protocol's
      1101 mirrored): a 1 that a filter must also weigh, between growing runs of don't-cares;
  tail: 11, 110, 1100, ...: don't-cares trailing the 1s, a demonstration of an edge artifact: a filter
      that learns 11 at taps j > 0 misses every positive that starts before j.
Each round is scored on its own validation set (1000 pairs) and measured on a stratified test set
(error and the starts at which it misses a positive). Network level: the solved share against
1 - (1 - p)^n and n50, the filters needed for half of the rounds to be solved (interpolated in log n; 95 %
bootstrap over rounds), against pattern length. Filter level: how many filters of a network solve alone
(max-pooled, threshold fitted on a selection set, scored on the validation set), and how many distinct
detectors those are: independent exploration predicts a constant share of detectors at every n.
Writes scaling_cnn.{png,csv,json}.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import cli
import engine
import eval_cnn
import report
import tuning
from eval_mechanism import filters_alone

NAME = "scaling_cnn"
MODEL = "Naive"
FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "seq_len"]
FAMILIES = {"inside": lambda k: "1" + "0" * (k - 2) + "1",
            "three": lambda k: "1" + "0" * ((k - 3) // 2) + "1" + "0" * (k - 3 - (k - 3) // 2) + "1",
            "tail": lambda k: "11" + "0" * (k - 2)}
SHORTEST = {"inside": 2, "three": 3, "tail": 2}
GROWTH = 4                                   # each step budget is this many times the one before
SAME_DETECTOR = 0.9                          # two detectors whose kernels have at least this cosine are one
RESAMPLES = 2000
RESAMPLE_BLOCK = 1 << 22                     # rounds drawn at once for the n50 bootstrap (32 MiB of indices)
TUNED, PROTOCOL_RATE = "tuned", "protocol"
COLUMNS = (report.Column("pattern", str), report.Column("steps", int, low=1), report.Column("rates", str),
           report.Column("lr", float, low=0),
           *eval_cnn.TEST_COLUMNS,
           report.Column("detectors", int, key=False, low=0), report.Column("distinct", int, key=False, low=0),
           report.Column("trained", int, key=False, low=1))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scaling(cli.StudySettings):
    """The study's own settings, beside experiment 1's: which patterns, which step budgets, and the
    selection set that fits each filter's threshold."""
    family: str = cli.setting("patterns: comma-separated families among " + ", ".join(FAMILIES))
    min_length: int = cli.setting("shortest pattern", cli.within(1, 4095), "in [1, 4095]")
    max_length: int = cli.setting("longest pattern", cli.within(1, 4095), "in [1, 4095]")
    budgets: int = cli.setting(f"step budgets: --steps, {GROWTH}x, {GROWTH ** 2}x, ... (checkpoints of one run)",
                               cli.within(1, 8), "in [1, 8]")
    selection: int = cli.setting("selection set: pairs of sequences per round (fits each filter's threshold, "
                                 "judges the tuning rounds)", cli.within(1, 100_000), "in [1, 100000]")
    rates: str = cli.setting("learning rates tried per pattern and filter count (comma-separated), each on "
                             "--tuning-rounds rounds at the largest budget")
    tuning_rounds: int = cli.setting("fresh rounds per learning rate tried", cli.within(1, 10_000), "in [1, 10000]")
    extend: int = cli.setting(f"further budgets after the last, {GROWTH}x each, in which only the rounds not yet "
                              "solved on a stopping set of their own (--stop-set) go on training (tuned rates)", cli.within(0, 4),
                              "in [0, 4]")
    stop_set: int = cli.setting("the stopping rule's set: pairs of sequences per round that decide, before each further "
                                "budget, which rounds go on training (drawn apart from every other set)",
                                cli.within(1, 100_000), "in [1, 100000]")

    def families(self) -> list[str]:
        return self.family.split(",")

    def lengths(self) -> range:
        return cli.sweep_range(self.min_length, self.max_length, "min_length", "max_length")

    def patterns(self) -> list[str]:
        """Every family's patterns, family after family, shortest first."""
        return list(dict.fromkeys(FAMILIES[f](k) for f in self.families() for k in self.lengths()))

    def steps(self, base: eval_cnn.Settings) -> list[int]:
        """The budgets every round trains to (checkpoints of one run)."""
        return [base.steps * GROWTH ** i for i in range(self.budgets)]

    def further(self, base: eval_cnn.Settings) -> list[int]:
        """The budgets after those, to which only rounds not yet solved on their stopping set go on."""
        return [base.steps * GROWTH ** i for i in range(self.budgets, self.budgets + self.extend)]

    def lrs(self) -> list[float]:
        return [float(v) for v in self.rates.split(",")]

    def check_with(self, base: eval_cnn.Settings) -> "Scaling":
        self.check()
        unknown = [f for f in self.families() if f not in FAMILIES]
        if unknown:
            raise cli.UsageError(f"--family must list families among {', '.join(FAMILIES)}, got {unknown[0]!r}")
        self.lengths()
        if self.budgets + self.extend > 8:
            raise cli.UsageError(f"--budgets ({self.budgets}) and --extend ({self.extend}) make more than 8 budgets")
        short = max(self.families(), key=SHORTEST.get)
        if self.min_length < SHORTEST[short]:
            raise cli.UsageError(f"--min-length ({self.min_length}) is below {SHORTEST[short]}, the shortest "
                                 f"pattern of family {short}")
        if self.max_length >= base.seq_len:
            raise cli.UsageError(f"--max-length ({self.max_length}) must be below --seq-len ({base.seq_len}): "
                                 "a pattern is shorter than its sequences")
        if not counts(base):
            raise cli.UsageError(f"--min-filters ({base.min_filters}) to --max-filters ({base.max_filters}) holds "
                                 "no power of two")
        try:
            lrs = self.lrs()
        except ValueError:
            lrs = []
        if not lrs or not all(0 < v <= cli.MAX_LR for v in lrs) or len(set(lrs)) != len(lrs):
            raise cli.UsageError(f"--rates must be distinct learning rates in (0, {cli.MAX_LR:g}], comma-separated, "
                                 f"got {self.rates!r}")
        return self

    def quick(self) -> "Scaling":
        return dataclasses.replace(self, max_length=min(self.max_length, self.min_length + 1),
                                   budgets=min(self.budgets, 2), selection=min(self.selection, 100),
                                   tuning_rounds=min(self.tuning_rounds, 4), extend=min(self.extend, 1),
                                   stop_set=min(self.stop_set, 100))

    def memory_bytes(self, base: eval_cnn.Settings) -> int:
        """The largest of: training the stack (a batch's windows and gradients at the largest count, per
        round), scoring a chunk of rounds on their own sets, the stratified test set."""
        top, chunk = max(counts(base)), min(base.rounds, 256)
        pairs = max(eval_cnn.VALIDATION_PAIRS, self.selection, self.stop_set)
        train = base.rounds * len(counts(base)) * 2 * top * base.seq_len * self.max_length * 4 * 2
        score = chunk * 2 * pairs * (2 * base.seq_len + 2 * top) * 4
        test = 4 * eval_cnn.TEST_PER_START * base.seq_len * (base.seq_len + chunk) * 4
        return max(train, score, test)


BASE = dataclasses.replace(eval_cnn.PROTOCOL, rounds=100, max_filters=16, pattern="1")   # pattern: set per trained pattern
PROTOCOL = Scaling(family="inside,three,tail", min_length=4, max_length=6, budgets=4, selection=250, rates="0.1,0.3,1",
                   tuning_rounds=20, extend=1, stop_set=4000)


def counts(base: eval_cnn.Settings) -> list[int]:
    """The filter counts: the powers of two in [--min-filters, --max-filters]."""
    return [n for n in (2 ** i for i in range(base.max_filters.bit_length())) if n >= base.min_filters]


# ----------------------------------------------------------------------------- training with checkpoints

class Checkpoints:
    """A progress bar that also measures the stack when it has taken each budget's steps: `fit` tells the
    bar once per step, so the networks measured at budget B are exactly those of a B-step run."""

    def __init__(self, bar, budgets: list[int], measure) -> None:
        self.bar, self.budgets, self.measure, self.taken = bar, set(budgets), measure, 0

    def update(self) -> None:
        self.bar.update()
        self.taken += 1
        if self.taken in self.budgets:
            self.measure(self.taken)


def distinct_detectors(w: torch.Tensor, detector: torch.Tensor) -> torch.Tensor:
    """Per round, how many different detectors its detector filters are (w (R, F, K), detector (R, F)):
    greedily, each detector joins the first earlier one whose kernel has cosine >= SAME_DETECTOR with it."""
    unit = torch.nn.functional.normalize(w, dim=-1)
    same = (unit @ unit.transpose(1, 2) >= SAME_DETECTOR) & detector[:, None, :] & detector[:, :, None]
    earlier = torch.tril(same, diagonal=-1).any(-1)            # an earlier detector is the same as it
    return (detector & ~earlier).sum(1)


def filter_level(stack: engine.Stack, sel: engine.Scorer, val: engine.Scorer, solved_at: float) -> list[tuple]:
    """Per round: its filters that solve alone (threshold fitted on the round's selection set, scored on its
    validation set) and how many distinct detectors they are, as (name, value) measurements."""
    out = []
    for g in stack.groups:
        w = stack.group_params(g)["conv.weight"].flatten(1, 2)                        # (R, F, K)
        for start in range(0, g.stop - g.start, 128):
            stop = min(start + 128, g.stop - g.start)
            rows = (g.start + start, g.start + stop)
            _, alone = filters_alone(w[start:stop], sel.data(*rows), val.data(*rows))
            detector = alone >= solved_at
            out += [(("detectors", int(d)), ("distinct", int(u)))
                    for d, u in zip(detector.sum(1).tolist(), distinct_detectors(w[start:stop], detector).tolist())]
    return out


def measured(stack: engine.Stack, s: eval_cnn.Settings, sets, pattern: str, rates: str, lrs: list[float],
             rows: list[report.Row]):
    """What `Checkpoints` calls at each budget: every round's validation score, test-set and filter-level
    measurements, as rows of the run's arm (`rates`: tuned or protocol; `lrs`: each count's rate; `trained`:
    the steps each round has taken, default all `step`)."""
    val, sel, test = sets
    labels = [(MODEL, n) for n in counts(s)]

    def measure(step: int, trained: list[int] | None = None) -> None:
        found = [(*t, *f) for t, f in zip(test(stack), filter_level(stack, sel, val, s.solved_at))]
        at = [lr for g, lr in zip(stack.groups, lrs) for _ in range(g.start, g.stop)]
        found = [(("lr", lr), *m, ("trained", took)) for lr, m, took in zip(at, found, trained or [step] * len(at))]
        rows.extend(report.rows_of(stack, labels, val(stack), measured=found,
                                   keys=(("pattern", pattern), ("steps", step), ("rates", rates))))
    return measure


def go_on(s: eval_cnn.Settings, gen: torch.Generator, stack: engine.Stack, pairs: int, lrs: list[float],
          budgets: list[int], measure, bar) -> None:
    """The stopping rule beyond the last common budget (s.steps): before each further budget, the rounds
    not solved on a set of their own of `pairs` pairs (drawn here from `gen`, apart from every other set)
    go on training to it, the others (and diverged ones) stop where they are; a stopped round stays stopped
    (its parameters, hence its score, no longer move). The stack is measured at each budget, every round
    with the steps it has taken. The rounds that go on are trained as a padded stack of their own, so that
    stopped rounds cost nothing; their optimizer state starts afresh there (the protocol's momentum buffer
    weighs its past by 0.5 per step: after 10 steps, by less than 0.001)."""
    stop_set = eval_cnn.selection(s, gen, pairs, s.rounds)
    per_round, trained, taken = stack.per_round(lrs), [s.steps] * stack.networks, s.steps
    for budget in budgets:
        scores, diverged = stop_set(stack)
        rows = ((scores < s.solved_at) & ~diverged).nonzero().flatten().tolist()
        if rows:
            part = dataclasses.replace(stack.take(rows), padded=True)      # a few rounds: one call, not one per count
            eval_cnn.fit(dataclasses.replace(s, steps=budget - taken), gen, part, bar,
                         optimizer=engine.make_optimizer(s.optimizer, per_round[rows], s.momentum))
            stack.put(part, rows)
            going = set(rows)
            trained = [budget if r in going else t for r, t in enumerate(trained)]
        else:
            bar.update(budget - taken)
        taken = budget
        measure(budget, trained)


def tuned_rates(s: eval_cnn.Settings, own: Scaling, gen: torch.Generator, bar) -> list[tuning.Choice]:
    """Each count's learning rate for this pattern: every rate of --rates on --tuning-rounds fresh rounds
    (one group per count, the rates side by side in it), trained to the largest budget and judged on a
    selection set of each round's own, by the share of rounds solved; rates that tie on it and on the mean
    race (tuning.race, from a generator of its own), then tuning.choose's rule among them."""
    lrs, t = own.lrs(), dataclasses.replace(s, rounds=own.tuning_rounds * len(own.lrs()))
    stack = engine.init_stack([eval_cnn.model(t, MODEL, n) for n in counts(t)], t.rounds, gen)
    per_row = torch.tensor(lrs, device=gen.device).repeat_interleave(own.tuning_rounds).repeat(len(stack.groups))
    eval_cnn.fit(t, gen, stack, bar, optimizer=engine.make_optimizer(t.optimizer, per_row, t.momentum))
    scores = eval_cnn.selection(t, gen, own.selection, t.rounds)(stack)[0].view(len(stack.groups), len(lrs), -1)
    tables = {tuning.Arm(MODEL, n, s, g.template): {(lr, t.momentum): v.cpu().numpy() for lr, v in zip(lrs, by_rate)}
              for n, g, by_rate in zip(counts(t), stack.groups, scores)}
    tuning.race(eval_cnn, dataclasses.replace(s, rounds=own.tuning_rounds), tables, own.selection, "solved", gen, bar)
    return [tuning.decide(table, "solved", t.solved_at) for table in tables.values()]


def run_pattern(base: eval_cnn.Settings, own: Scaling, pattern: str, seed: int, device: str, bar
                ) -> tuple[list[report.Row], list[tuning.Choice], dict[str, float]]:
    """One pattern, from its own generator: the rates tuned per count; Naive(n) for every count, `rounds` each,
    trained at its rate to the largest budget and measured at each, then the further budgets by the stopping
    rule (`go_on`); and the protocol's rate at its budget. Also the wall seconds from its start to the end
    of the tuning and of each budget's measurement."""
    gen, start = torch.Generator(device).manual_seed(seed), time.perf_counter()
    s = dataclasses.replace(base, pattern=pattern, steps=own.steps(base)[-1])
    chosen = tuned_rates(s, own, gen, bar)
    seconds = {"tuning": round(time.perf_counter() - start, 1)}
    sets = eval_cnn.validation(s, gen, s.rounds), eval_cnn.selection(s, gen, own.selection, s.rounds), \
        eval_cnn.test_set(s, gen)
    rows: list[report.Row] = []
    for rates, lrs, steps in ((TUNED, [c.lr for c in chosen], own.steps(base)),
                              (PROTOCOL_RATE, [base.lr] * len(chosen), own.steps(base)[:1])):
        at = dataclasses.replace(s, steps=steps[-1])
        stack = engine.init_stack([eval_cnn.model(at, MODEL, n) for n in counts(at)], at.rounds, gen)
        measure = timed(measured(stack, at, sets, pattern, rates, lrs, rows), f"{rates} ", seconds, start)
        eval_cnn.fit(at, gen, stack, Checkpoints(bar, steps, measure), lr=lrs)
        if rates == TUNED:        # from a generator of its own: the budgets above are the same with or without
            go_on(at, torch.Generator(device).manual_seed(seed + 1), stack, own.stop_set, lrs, own.further(base),
                  measure, bar)
    return rows, chosen, seconds


def timed(measure, prefix: str, seconds: dict[str, float], start: float):
    """`measure`, noting in `seconds` when each budget's measurement ended (wall seconds since `start`)."""
    def at(step: int, trained: list[int] | None = None) -> None:
        measure(step, trained)
        seconds[f"{prefix}{step}"] = round(time.perf_counter() - start, 1)
    return at


def run(base: eval_cnn.Settings, own: Scaling, gen: torch.Generator, record: dict) -> list[report.Row]:
    """Every pattern, each from a seed of its own drawn here, side by side in as many processes as the
    CPU's threads allow (a pattern's numbers do not depend on which process runs it)."""
    patterns = own.patterns()
    seeds = torch.randint(0, 2 ** 62, (len(patterns),), generator=gen, device=gen.device).tolist()
    workers = cli.workers_for(len(patterns), gen.device)
    steps = own.steps(base)
    each = 2 * steps[-1] + steps[0] + (own.further(base) or steps)[-1] - steps[-1]      # steps of its stacks
    with report.bar(len(patterns) * each if workers == 1 else None, "scaling") as bar:
        tasks = [lambda p=p, seed=seed: run_pattern(base, own, p, seed, str(gen.device), bar)
                 for p, seed in zip(patterns, seeds)]
        done = cli.in_processes(tasks, workers, patterns)
    record["chosen"] = {p: {n: dataclasses.asdict(c) for n, c in zip(counts(base), chosen)}
                        for p, (_, chosen, _) in zip(patterns, done)}
    record["seconds"] = {p: seconds for p, (*_, seconds) in zip(patterns, done)}
    return [row for rows, *_ in done for row in rows]


# ----------------------------------------------------------------------------- the law and n50

def arm(r: report.Row) -> tuple[str, int, str]:
    return r.get("pattern"), r.get("steps"), r.get("rates")


def grouped(rows: list[report.Row], measure: str | None = None) -> dict[tuple[str, int, str], dict[int, np.ndarray]]:
    """{(pattern, steps, rates): {n: the scores (or the measurement named) in round order}} (report.by_model)."""
    if measure is not None:
        rows = [dataclasses.replace(r, score=r.get(measure)) for r in rows]
    return report.by_model(rows, series=arm)


def n50(shares: dict[int, float]) -> float:
    """Filters needed for half of the rounds to be solved: the first crossing of 0.5, interpolated
    linearly in log2(n) between the counts measured; inf if no count reaches it; the smallest count if
    it is already there."""
    ns = sorted(shares)
    if shares[ns[0]] >= 0.5:
        return float(ns[0])
    for lo, hi in zip(ns, ns[1:]):
        if shares[hi] >= 0.5:
            t = (0.5 - shares[lo]) / (shares[hi] - shares[lo])
            return float(2 ** (math.log2(lo) + t * (math.log2(hi) - math.log2(lo))))
    return math.inf


def n50_interval(solved: dict[int, np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """n50 and its 95 % percentile-bootstrap interval (rounds resampled within each filter count). The rounds
    of many resamples are drawn in one call, in the order (and so the numbers) of drawing them one count at a
    time: each resample, each count in turn, each count's draws bounded by its own number of rounds."""
    rng = np.random.default_rng(seed)
    lengths = [len(v) for v in solved.values()]
    highs, ends = np.repeat(lengths, lengths), np.cumsum(lengths)
    block = max(1, RESAMPLE_BLOCK // len(highs))
    draws = []
    for start in range(0, RESAMPLES, block):
        picks = rng.integers(0, np.tile(highs, (min(block, RESAMPLES - start), 1)))
        shares = [v[picks[:, end - len(v):end]].mean(axis=1).tolist() for v, end in zip(solved.values(), ends)]
        draws += [n50(dict(zip(solved, resample))) for resample in zip(*shares)]
    lo, hi = np.quantile(draws, [0.025, 0.975], method="inverted_cdf")      # an order statistic: inf stays inf
    return n50({n: float(v.mean()) for n, v in solved.items()}), float(lo), float(hi)


def independent(p: float, n: np.ndarray | float) -> np.ndarray | float:
    """The solved share of n independent tries that each succeed with probability p."""
    return 1 - (1 - p) ** n


def independent_n50(p: float) -> float:
    """The n (continuous) at which n independent tries succeed half of the time."""
    if p >= 0.5:
        return 1.0
    return math.inf if p <= 0 else math.log(0.5) / math.log(1 - p)


def missed_by_start(rows: list[report.Row]) -> dict[int, int]:
    """How many networks miss a positive at each start (from `missed_starts`), over the rows given."""
    out: dict[int, int] = {}
    for r in rows:
        for start in filter(None, r.get("missed_starts").split(";")):
            out[int(start)] = out.get(int(start), 0) + 1
    return dict(sorted(out.items()))


@dataclasses.dataclass(frozen=True)
class Arm:
    """What one (pattern, budget, rates) says: each count's solved rounds and learning rate, the one-filter
    rate p [95 % Wilson] (None without one-filter networks), n50 measured and independent, detectors and
    distinct ones, networks missing a positive by start, and each count's rounds stopped before the budget
    by the stopping rule (`go_on`) and, of those, the ones that fail on the validation set."""
    pattern: str
    steps: int
    rates: str
    lr: dict[int, float]
    solved: dict[int, np.ndarray]
    p: tuple[float, float, float] | None
    n50: tuple[float, float, float]
    n50_independent: tuple[float, float, float] | None
    detectors: dict[int, np.ndarray]
    distinct: dict[int, np.ndarray]
    missed: dict[int, int]
    stopped: dict[int, int]
    stopped_failed: dict[int, int]


def law(rows: list[report.Row], solved_at: float) -> list[Arm]:
    scores, detectors, distinct = grouped(rows), grouped(rows, "detectors"), grouped(rows, "distinct")
    members: dict[tuple[str, int, str], list[report.Row]] = {}
    for r in rows:
        members.setdefault(arm(r), []).append(r)
    out = []
    for key, by_n in scores.items():
        solved = {n: v >= solved_at for n, v in by_n.items()}
        p = None if 1 not in solved else (float(solved[1].mean()), *report.wilson_ci(int(solved[1].sum()), len(solved[1])))
        mine = members[key]
        stopped = [r for r in mine if r.get("trained") < r.get("steps")]
        out.append(Arm(*key, {r.sweep: r.get("lr") for r in mine}, solved, p, n50_interval(solved),
                       None if p is None else (independent_n50(p[0]), independent_n50(p[2]), independent_n50(p[1])),
                       detectors[key], distinct[key], missed_by_start(mine),
                       {n: sum(r.sweep == n for r in stopped) for n in by_n},
                       {n: sum(r.sweep == n and r.score < solved_at for r in stopped) for n in by_n}))
    return sorted(out, key=lambda a: (a.rates != PROTOCOL_RATE, a.steps))    # the write-up's setting first


def label(a: Arm) -> str:
    return f"{a.steps} steps" + (", protocol rate" if a.rates == PROTOCOL_RATE else "") + \
        (", stopping rule" if any(a.stopped.values()) else "")


def family_of(pattern: str) -> str:
    """The first family that makes this pattern at its length."""
    return next((f for f, make in FAMILIES.items() if len(pattern) >= SHORTEST[f] and make(len(pattern)) == pattern), "")


def fmt(n: float) -> str:
    return "not reached" if math.isinf(n) else f"{n:.1f}"


def n50_table(arms_: list[Arm], steps: int, rates: str) -> list[str]:
    lines = [f"n50 at {steps} steps, {rates} rates (measured [95 % bootstrap] vs independent tries [from p's "
             "Wilson interval]):",
             "| family | pattern | p (1 filter) % | n50 measured | n50 independent |", "|---|---|---|---|---|"]
    for a in arms_:
        if (a.steps, a.rates) == (steps, rates):
            p = "-" if a.p is None else f"{100 * a.p[0]:.1f} [{100 * a.p[1]:.1f}, {100 * a.p[2]:.1f}]"
            ind = "-" if a.n50_independent is None else "{} [{}, {}]".format(*map(fmt, a.n50_independent))
            lines.append(f"| {family_of(a.pattern)} | `{a.pattern}` | {p} | "
                         + "{} [{}, {}]".format(*map(fmt, a.n50)) + f" | {ind} |")
    return lines


def failures(rows: list[report.Row], budgets: list[int], solved_at: float) -> list[str]:
    """At each budget of the stopping rule, the wide networks (n > 1, tuned) that fail on their validation set:
    stopped by the rule or gone on (diverged apart), each with its count of wrong sequences."""
    sequences = 2 * eval_cnn.VALIDATION_PAIRS
    lines = []
    for steps in budgets:
        failed = [r for r in rows if (r.get("steps"), r.get("rates")) == (steps, TUNED) and r.sweep > 1
                  and r.score < solved_at]
        wrong = lambda keep: sorted(round((1 - r.score) * sequences) for r in failed if keep(r) and not r.diverged)
        stopped, went_on = wrong(lambda r: r.get("trained") < steps), wrong(lambda r: r.get("trained") == steps)
        tested = sorted(round(r.get("test_error") * test_size(r.get("pattern"))) for r in failed if not r.diverged)
        lines.append(f"wide networks failing at {steps} steps: {len(failed)}; stopped by the rule {len(stopped)} "
                     f"({tally(stopped)} of {sequences}), went on {len(went_on)} ({tally(went_on)}), diverged "
                     f"{sum(r.diverged for r in failed)}; the same networks but the diverged, on the stratified test set "
                     f"(about {test_size('1001')} sequences): {tally(tested)}")
    return lines


def tally(counts: list[int]) -> str:
    """`1 wrong x32, 2 wrong x1`: how many of the counts are each value, in order of first appearance."""
    return ", ".join(f"{w} wrong x{counts.count(w)}" for w in dict.fromkeys(counts)) or "none"


def test_size(pattern: str) -> int:
    """Sequences in a pattern's stratified test set: TEST_PER_START positives at every start, as many negatives."""
    return 2 * eval_cnn.TEST_PER_START * (dataclasses.replace(BASE, pattern=pattern).task().last_start + 1)


def notes(rows: list[report.Row], solved_at: float) -> str:
    arms_ = law(rows, solved_at)
    budgets = sorted({a.steps for a in arms_ if a.rates == TUNED})
    lines = ["learning rate per pattern, tuned per filter count on the tuning rounds (n: lr):"]
    lines += [f"  {a.pattern}: " + ", ".join(f"{n}: {lr:g}" for n, lr in sorted(a.lr.items()))
              for a in arms_ if (a.rates, a.steps) == (TUNED, budgets[-1])]
    lines.append("per pattern and budget: solved % measured/independent at each n; detectors per network "
                 "(filters that solve alone) / distinct ones; networks missing a positive, by start (most first):")
    for a in arms_:
        cells = ", ".join(f"{n}: {100 * v.mean():.1f}/" + ("-" if a.p is None else f"{100 * independent(a.p[0], n):.1f}")
                          for n, v in a.solved.items())
        det = ", ".join(f"{n}: {a.detectors[n].mean():.2f}/{a.distinct[n].mean():.2f}" for n in a.solved)
        miss = ", ".join(f"{k}: {v}" for k, v in sorted(a.missed.items(), key=lambda kv: -kv[1])[:3]) or "none"
        lines.append(f"  {a.pattern} at {label(a)}: {cells}; detectors {det}; missed at {miss}")
    top = max(n for a in arms_ for n in a.solved)
    first = arms_[0]
    lines.append(f"networks of {top} filters at {label(first)} missing a positive that starts at 0, 1, 2, 3:")
    for a in (a for a in arms_ if (a.steps, a.rates) == (first.steps, first.rates)):
        widest = [r for r in rows if arm(r) == (a.pattern, a.steps, a.rates) and r.sweep == top]
        missed = missed_by_start(widest)
        lines.append(f"  {a.pattern}: " + ", ".join(str(missed.get(k, 0)) for k in range(4)) + f" of {len(widest)}")
    for steps, rates in dict.fromkeys([(first.steps, first.rates), (budgets[0], TUNED), *((b, TUNED) for b in budgets[-2:])]):
        lines += n50_table(arms_, steps, rates)
    tuned = {(a.pattern, a.steps): a for a in arms_ if a.rates == TUNED}
    ruled = [a for a in tuned.values() if any(a.stopped.values())]
    if ruled:
        lines.append("stopping rule: per count, rounds stopped before the budget (solved on a set of their own) / of "
                     "those, failed on the validation set:")
        lines += [f"  {a.pattern} at {a.steps} steps: " + ", ".join(f"{n}: {a.stopped[n]}/{a.stopped_failed[n]}"
                                                                     for n in a.solved) for a in ruled]
        lines += failures(rows, sorted({a.steps for a in ruled}), solved_at)
    if len(budgets) > 1:
        steps = list(zip(budgets, budgets[1:]))[-3:]
        lines.append("largest change of a solved share over the counts between budgets, tuned rates (points): "
                     + ", ".join(f"{b0} -> {b1}" for b0, b1 in steps))
        for pattern in dict.fromkeys(a.pattern for a in arms_):
            changes = [max(abs(tuned[(pattern, b1)].solved[n].mean() - tuned[(pattern, b0)].solved[n].mean())
                           for n in tuned[(pattern, b1)].solved) for b0, b1 in steps]
            lines.append(f"  {pattern}: " + ", ".join(f"{100 * c:.1f}" for c in changes))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figure

def panel_law(ax, pattern: str, arms_: list[Arm], solved_at: float) -> None:
    """One pattern: the solved share against n at each budget (Wilson band) and independence (dashed)."""
    mine = [a for a in arms_ if a.pattern == pattern]
    for i, a in enumerate(mine):
        ns = np.array(sorted(a.solved), dtype=float)
        share = np.array([a.solved[n].mean() for n in sorted(a.solved)]) * 100
        ci = np.array([report.wilson_ci(int(a.solved[n].sum()), len(a.solved[n])) for n in sorted(a.solved)]) * 100
        color = "0.4" if a.rates == PROTOCOL_RATE else f"C{i}"
        ax.plot(ns, share, marker="o", color=color, label=label(a), linestyle=":" if a.rates == PROTOCOL_RATE else "-")
        ax.fill_between(ns, ci[:, 0], ci[:, 1], color=color, alpha=0.15)
        if a.p is not None:
            grid = np.geomspace(ns[0], ns[-1], 40)
            ax.plot(grid, 100 * independent(a.p[0], grid), linestyle="--", color=color)
    ax.set_xscale("log", base=2)
    ticks = sorted({n for a in mine for n in a.solved})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    rates = next((a.lr for a in reversed(mine) if a.rates == TUNED), {})
    ax.set(title=f"{pattern} ({family_of(pattern)}); tuned lr by n: " + "/".join(f"{rates[n]:g}" for n in sorted(rates)),
           xlabel="filters n", ylabel="solved (%)", ylim=(-2, 102))
    ax.grid(alpha=0.3)


def panel_n50(ax, arms_: list[Arm], family: str, top: int) -> None:
    """n50 against pattern length at the protocol's budget and rate and at the last budget (tuned rates),
    measured and independent."""
    budgets = sorted({a.steps for a in arms_ if a.rates == TUNED})
    for j, (steps, rates) in enumerate(dict.fromkeys(((arms_[0].steps, arms_[0].rates), (budgets[-1], TUNED)))):
        mine = [a for a in arms_ if (a.steps, a.rates) == (steps, rates) and family_of(a.pattern) == family]
        xs = np.array([len(a.pattern) for a in mine], dtype=float) + (j - 0.5) * 0.1
        for key, style, label in (("n50", dict(marker="o"), "measured"),
                                  ("n50_independent", dict(marker="s", linestyle="--"), "independent")):
            values = [getattr(a, key) for a in mine if getattr(a, key) is not None]
            if len(values) != len(mine) or not mine:
                continue
            mid, lo, hi = (np.array([min(v[i], 2 * top) for v in values]) for i in range(3))
            ax.errorbar(xs, mid, yerr=[np.maximum(mid - lo, 0), np.maximum(hi - mid, 0)], capsize=3, color=f"C{j}",
                        label=f"{label}, {steps} steps, {rates}", **style)
    ax.axhline(top, color="0.5", linewidth=0.8)
    ax.set(yscale="log", xlabel="pattern length", ylabel="n50 (filters)",
           title=f"n50, {family} (line: largest n trained)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def panel_detectors(ax, arms_: list[Arm], family: str) -> None:
    """Detectors per filter, and distinct detectors per detector, against n, at the last budget."""
    last = max(a.steps for a in arms_)
    for i, a in enumerate(a for a in arms_ if (a.steps, a.rates) == (last, TUNED) and family_of(a.pattern) == family):
        ns = sorted(a.detectors)
        share = [a.detectors[n].mean() / n for n in ns]
        ci = [np.array(report.bootstrap_mean_ci(a.detectors[n] / n)) for n in ns]
        ax.errorbar(ns, share, yerr=[[s - c[0] for s, c in zip(share, ci)], [c[1] - s for s, c in zip(share, ci)]],
                    marker="o", capsize=2, color=f"C{i}", label=a.pattern)
        spread = [a.distinct[n].sum() / max(a.detectors[n].sum(), 1) for n in ns]
        ax.plot(ns, spread, linestyle=":", marker="x", color=f"C{i}")
    ax.set_xscale("log", base=2)
    ticks = sorted({n for a in arms_ for n in a.solved})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set(xlabel="filters n", ylabel="share", ylim=(-0.02, 1.02),
           title=f"{family}, {last} steps: detectors/filter (o),\ndistinct/detector (x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def panel_missed(ax, arms_: list[Arm], rows: list[report.Row]) -> None:
    """The widest networks at the protocol's budget and rate: how many miss a positive at each start, per pattern."""
    first, top = arms_[0], max(n for a in arms_ for n in a.solved)
    for i, a in enumerate(a for a in arms_ if (a.steps, a.rates) == (first.steps, first.rates)):
        widest = [r for r in rows if arm(r) == (a.pattern, a.steps, a.rates) and r.sweep == top]
        missed = missed_by_start(widest)
        starts = np.arange(12)
        ax.plot(starts, [100 * missed.get(int(k), 0) / len(widest) for k in starts], color=f"C{i % 10}", marker=".",
                linestyle="--" if family_of(a.pattern) == "tail" else "-", label=a.pattern)
    ax.set(xlabel="start of the positive's pattern", ylabel=f"networks of {top} filters missing one there (%)",
           title=f"false negatives by start, {label(first)}\n(dashed: tail family)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


def render(summaries: list[report.Summary], rows: list[report.Row], solved_at: float):
    arms_ = law(rows, solved_at)
    patterns = list(dict.fromkeys(a.pattern for a in arms_))
    families = list(dict.fromkeys(family_of(p) for p in patterns))
    top = max(n for a in arms_ for n in a.solved)
    cols = 4
    extra = 2 * len(families) + 1
    fig, axes = report.canvas(-(-(len(patterns) + extra) // cols), cols, (4.6 * cols, 3.9 * -(-(len(patterns) + extra) // cols)),
                              left=0.8, wgap=0.8)                       # panels as wide as their titles need
    axes = axes.flatten()
    for ax, pattern in zip(axes, patterns):
        panel_law(ax, pattern, arms_, solved_at)
    axes[0].legend(fontsize=7, title="dashed: 1 - (1 - p)^n", title_fontsize=7)
    rest = iter(axes[len(patterns):])
    for family in families:
        panel_n50(next(rest), arms_, family, top)
        panel_detectors(next(rest), arms_, family)
    panel_missed(next(rest), arms_, rows)
    for ax in rest:
        ax.set_visible(False)
    fig.text(0.5, 0.003, f"solved: validation accuracy >= {solved_at:g} on each round's own 1000 pairs; bands and bars: "
             "95 % intervals (shares: Wilson; n50 and means: bootstrap over rounds)", ha="center", fontsize=8, color="0.4")
    return report.png(fig)


FIGURE = report.Figure(name=NAME, title="harder patterns", ylabel="validation accuracy (%)",
                       solved_label="accuracy >= {solved_at:.1%}", views=(), percent=True, models=(MODEL,),
                       columns=COLUMNS, table=False, render=render)


# ----------------------------------------------------------------------------- command line

def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, {"cnn": BASE}, FLAGS, {"cnn": PROTOCOL})


def jobs(args) -> list[cli.Job]:
    # the study's rules first, on the experiment's checked fields: they name the flags this script has
    cli.overridden(PROTOCOL, args).check_with(cli.Checked.check(cli.overridden(BASE, args)))
    (base, own), = cli.study_settings(args, {"cnn": BASE}, {"cnn": PROTOCOL}).values()
    record = {"pattern": own.patterns(), "steps": own.steps(base), "further": own.further(base), "filters": counts(base)}
    return [cli.Job((FIGURE,), base, BASE, lambda gen: {NAME: run(base, own, gen, record)}, notes={NAME: notes},
                    study=own, study_protocol=PROTOCOL, record=record)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
