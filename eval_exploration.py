"""Is width exploration? One wide network against the best of many small ones, at equal budgets.

If over-parameterization works as exploration, then exploring explicitly (training k small networks
independently and keeping the best) should do as well as one network k times wider, at the same number
of trained parameters, and it leaves a small final network.
  - Experiment 1 (1101): one Naive(n) (5n + 1 trained parameters) against the best of k = 1..6 Naive(1)
    (6k) and the best of 3k RandomConv(1) (2 trained parameters each: 6k as well).
  - Experiment 2 (AND): one Naive(w) (4w + 1) against the best of k = 1..10 Naive(2) (9k).
  - Both: the trained HyperNetwork's network at z = 0 (as in the faithful runs) against the best of
    k = 1, 2, 4, ..., 64 networks it generates from latents z ~ N(0, I) drawn after training.
Every network is trained and scored as in the faithful runs (same rounds, steps, data and metric). A
round's best candidate is the one with the best score on a selection set of fresh data, never on the
validation set; that network is then scored on the validation set like any model.
Selection noise: the same trained candidates at the largest k, chosen on fresh selection sets 1x, 5x
and 25x (experiment 1) or 1x, 10x and 100x (experiment 2) --selection, against the oracle bound (the
candidate best on the validation set itself: an upper bound of any selection rule, not a method).
Every flag applies to every network the study trains. Writes exploration_{cnn,bool} and
exploration_selection_{cnn,bool} (.png, .csv, .json).
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

import cli
import data
import engine
import eval_bool
import eval_cnn
import report
from hypernet import Z_DIM

SCRIPTS = {"cnn": eval_cnn, "bool": eval_bool}
WIDE = {"cnn": "wide Naive(n)", "bool": "wide Naive(w)"}
SEEDS, ZERO = "HyperNetwork, best of k latents", "HyperNetwork, z = 0"
SMALL = {"cnn": 1, "bool": 2}                              # the small network: 1 filter, width 2
RESTARTED = {"cnn": ("Naive", "RandomConv"), "bool": ("Naive",)}
SELECTION_SCALE = {"cnn": (1, 5, 25), "bool": (1, 10, 100)}
SELECTION_UNIT = {"cnn": "pairs of sequences", "bool": "points per round"}
FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "min_width",
         "max_width", "restarts", "samples", "selection"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Search:
    """The search's own settings, added to an experiment's."""
    restarts: int = cli.setting("largest k of best of k small Naive networks", cli.positive, "a positive integer")
    samples: int = cli.setting("largest k of best of k sampled hypotheses (k = 1, 2, 4, ...)", cli.positive,
                               "a positive integer")
    selection: int = cli.setting("selection set: pairs of sequences (cnn) or points per round (bool); the "
                                 "selection-noise figure also uses larger ones", cli.positive, "a positive integer")

    def quick(self):
        return dataclasses.replace(super().quick(), restarts=min(self.restarts, 3), samples=min(self.samples, 4))

    def memory_bytes(self) -> int:
        """The candidates' stack is about as large as the wide sweep's."""
        return 2 * super().memory_bytes()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNSearch(Search, eval_cnn.Settings):
    """Experiment 1's settings and the search's."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoolSearch(Search, eval_bool.Settings):
    """Experiment 2's settings and the search's."""


PROTOCOLS = {"cnn": CNNSearch(**dataclasses.asdict(eval_cnn.PROTOCOL), restarts=6, samples=64, selection=200),
             "bool": BoolSearch(**dataclasses.asdict(eval_bool.PROTOCOL), restarts=10, samples=64, selection=500)}


def pick(selection: Tensor, k: int) -> Tensor:
    """Per round, the index of the candidate, among the first k, best on the selection scores (R, C);
    a tie goes to the earlier one."""
    return selection[:, :k].argmax(1)


def best_of(selection: Tensor, validation: Tensor, k: int) -> Tensor:
    """Per round, the validation score of the candidate, among the first k, best on the selection set."""
    return validation.gather(1, pick(selection, k)[:, None])[:, 0]


@dataclasses.dataclass
class Scored:
    """Each round's candidates scored on one data set: scores and diverged, both (R, C)."""
    scores: Tensor
    diverged: Tensor

    def rows(self, model: str, sweep: int, budget: int, chosen: Tensor | None = None) -> list[report.Row]:
        """One row per round: the candidate `chosen` (R,) of each round (default: the only one)."""
        at = torch.zeros(len(self.scores), dtype=torch.long) if chosen is None else chosen
        scores, diverged = (t.gather(1, at[:, None].to(t.device))[:, 0].tolist() for t in (self.scores, self.diverged))
        return [report.Row(model, sweep, budget, r, s, d) for r, (s, d) in enumerate(zip(scores, diverged))]

    def columns(self, start: int, stop: int) -> "Scored":
        return Scored(self.scores[:, start:stop], self.diverged[:, start:stop])


def scored(stack: engine.Stack, rounds: int, scorer: engine.Scorer) -> Scored:
    """A candidate-major stack (row c * rounds + r is candidate c of round r) scored -> (rounds, C) each."""
    return Scored(*(t.view(-1, rounds).t() for t in scorer(stack)))


def train_candidates(e: str, s: cli.Settings, gen: torch.Generator, bar: tqdm) -> tuple[engine.Stack, dict[str, int]]:
    """Train every restarted family's candidates in one stack; returns it and each family's count.

    A family's candidates are as many as a budget of --restarts small Naive networks buys: for
    RandomConv(1), which trains 2 parameters against Naive(1)'s 6, three times as many.
    """
    script = SCRIPTS[e]
    small = {f: script.model(s, f, SMALL[e]) for f in RESTARTED[e]}
    counts = {f: s.restarts * small["Naive"].trained_params // net.trained_params for f, net in small.items()}
    return script.train(s, gen, [small[f] for f in small for _ in range(counts[f])], bar), counts


def by_family(candidates: Scored, counts: dict[str, int]) -> dict[str, Scored]:
    out, start = {}, 0
    for family, count in counts.items():
        out[family] = candidates.columns(start, start + count)
        start += count
    return out


def hypotheses(e: str, s: cli.Settings, gen: torch.Generator, bar: tqdm, sets: dict
               ) -> tuple[dict[str, Scored], int]:
    """Train the HyperNetwork; the networks it generates at z = 0 (column 0) and at --samples latents
    z ~ N(0, I), scored on each set of `sets`, and its trained parameter count."""
    hyper = SCRIPTS[e].model(s, "HyperNetwork", SMALL[e])
    stack = SCRIPTS[e].train(s, gen, [hyper], bar)
    rounds, dev = s.rounds, gen.device
    z = torch.cat([torch.zeros(rounds, Z_DIM, device=dev), data.latents((s.samples * rounds,), gen, Z_DIM)])
    tiled = {name: p.repeat(1 + s.samples, *([1] * (p.dim() - 1))) for name, p in stack.params.items()}
    generated = engine.frozen_stack(hyper.generate(torch.zeros(Z_DIM, device=dev)), hyper.stacked_generate(tiled, z))
    return {name: scored(generated, rounds, d) for name, d in sets.items()}, hyper.trained_params


def powers_of_two(top: int) -> list[int]:
    """1, 2, 4, ... up to top, and top itself."""
    return sorted({2 ** i for i in range(top.bit_length()) if 2 ** i <= top} | {top})


def explore(e: str, s: cli.Settings, gen: torch.Generator, sets: dict, draw_selection
            ) -> dict[str, list[report.Row]]:
    """The rows of both figures. `sets` holds the "selection" and "validation" data; after all training,
    `draw_selection(size)` draws the larger fresh selection sets of the selection-noise figure."""
    small, script = SMALL[e], SCRIPTS[e]
    with report.bar(2 * s.steps, f"exploration ({e})") as bar:
        stack, counts = train_candidates(e, s, gen, bar)
        pools = {name: by_family(scored(stack, s.rounds, d), counts) for name, d in sets.items()}
        generated, hyper_params = hypotheses(e, s, gen, bar, sets)
    rows = []
    for family in counts:
        sel, val = pools["selection"][family], pools["validation"][family]
        each = script.model(s, family, small).trained_params
        for k in range(1, counts[family] + 1):
            rows += val.rows(f"best of k {family}({small})", k, k * each, pick(sel.scores, k))
    sel, val = generated["selection"].columns(1, None), generated["validation"].columns(1, None)
    rows += generated["validation"].rows(ZERO, 1, hyper_params)
    for k in powers_of_two(s.samples):
        rows += val.rows(SEEDS, k, hyper_params, pick(sel.scores, k))
    return {f"exploration_{e}": rows, f"exploration_selection_{e}": selection_noise(e, s, stack, counts, pools,
                                                                                   draw_selection)}


def selection_noise(e: str, s: cli.Settings, stack: engine.Stack, counts: dict[str, int], pools: dict,
                    draw_selection) -> list[report.Row]:
    """Best of the largest k chosen on selection sets of growing size, and the oracle bound, per family."""
    small, script = SMALL[e], SCRIPTS[e]
    sizes = [factor * s.selection for factor in SELECTION_SCALE[e]]
    choices = {sizes[0]: pools["selection"]}
    for size in sizes[1:]:
        choices[size] = by_family(scored(stack, s.rounds, draw_selection(size)), counts)
    rows = []
    for family, count in counts.items():
        val, budget = pools["validation"][family], count * script.model(s, family, small).trained_params
        rows += [r for size in sizes
                 for r in val.rows(f"best of k {family}({small})", size, budget, pick(choices[size][family].scores, count))]
        rows += [r for size in sizes for r in val.rows(oracle(family, small), size, budget, pick(val.scores, count))]
    return rows


def oracle(family: str, small: int) -> str:
    return f"oracle bound, best of k {family}({small})"


def wide_rows(e: str, rows: list[report.Row], figure_of_selection: bool, s: cli.Settings) -> list[report.Row]:
    """The wide sweep's rows renamed; for the selection figure, its largest network at every selection size."""
    wide = [dataclasses.replace(r, model=WIDE[e]) for r in rows]
    if not figure_of_selection:
        return wide
    top = max(r.sweep for r in wide)
    return [dataclasses.replace(r, sweep=factor * s.selection) for factor in SELECTION_SCALE[e]
            for r in wide if r.sweep == top]


def combined(e: str, s: cli.Settings, wide: list[report.Row], explored: dict[str, list[report.Row]]) -> dict:
    return {name: wide_rows(e, wide, name.startswith("exploration_selection"), s) + rows
            for name, rows in explored.items()}


def run(e: str, s: cli.Settings, gen: torch.Generator) -> dict[str, list[report.Row]]:
    script = SCRIPTS[e]
    validation = script.validation(s, gen, cycle=s.rounds)
    wide = script.sweep(s, gen, validation, families=("Naive",))
    sets = {"selection": script.selection(s, gen, s.selection, cycle=s.rounds), "validation": validation}
    draw = lambda size: script.selection(s, gen, size, cycle=s.rounds)
    return combined(e, s, wide, explore(e, s, gen, sets, draw))


def label(model: str, sweep: int) -> str:
    """A model name with its sweep value in: "best of k Naive(1)" at 6 is "best of 6 Naive(1)"."""
    return f"wide Naive({sweep})" if model in WIDE.values() else model.replace(" k ", f" {sweep} ")


def groups_of(rows: list[report.Row]) -> dict[str, dict[int, list[report.Row]]]:
    groups: dict[str, dict[int, list[report.Row]]] = {}
    for r in rows:
        groups.setdefault(r.model, {}).setdefault(r.sweep, []).append(r)
    return groups


def difference(a: list[report.Row], b: list[report.Row], paired: bool, solved_at: float) -> str:
    """Mean and solved share of a minus b, with 95 % bootstrap intervals, as printed."""
    sa, sb = (np.array([r.score for r in sorted(rows, key=lambda r: r.round)]) for rows in (a, b))
    mean = report.difference_ci(sa, sb, paired)
    solved = report.difference_ci(sa >= solved_at, sb >= solved_at, paired)
    return (f"mean {mean[0]:+.4f} [{mean[1]:+.4f}, {mean[2]:+.4f}], solved {100 * solved[0]:+.1f} "
            f"[{100 * solved[1]:+.1f}, {100 * solved[2]:+.1f}] points")


def comparisons(e: str) -> cli.Notes:
    """The key differences, with 95 % bootstrap intervals: width against restarts at the largest
    budget, the best sampled hypothesis against z = 0 (paired by round), restarts against samples."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        groups = groups_of(rows)
        largest = {model: max(by_sweep) for model, by_sweep in groups.items()}

        def line(a: str, b: str, paired: bool) -> str:
            ra, rb = groups[a][largest[a]], groups[b][largest[b]]
            name = lambda m, rs: f"{label(m, largest[m])} [{rs[0].params}]"
            return (f"  {name(a, ra)} - {name(b, rb)}{' (paired)' if paired else ''}: "
                    + difference(ra, rb, paired, solved_at))
        small = SMALL[e]
        pairs = [(WIDE[e], f"best of k {f}({small})", False) for f in RESTARTED[e]]
        pairs += [(SEEDS, ZERO, True), (f"best of k Naive({small})", SEEDS, False)]
        lines = [line(a, b, paired) for a, b, paired in pairs if a in groups and b in groups]
        header = "differences a - b at each one's largest sweep point [trained parameters], 95 % bootstrap:"
        return "\n".join([header] + lines)
    return notes


def selection_comparisons(e: str) -> cli.Notes:
    """Width minus restarts chosen on each selection size, width minus the oracle bound, and the
    oracle bound minus the restarts (paired: the same candidates), with 95 % bootstrap intervals."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        groups = groups_of(rows)
        lines = [f"selection noise at the largest k, 95 % bootstrap (selection sizes in {SELECTION_UNIT[e]}):"]
        for family in RESTARTED[e]:
            chosen, bound = f"best of k {family}({SMALL[e]})", oracle(family, SMALL[e])
            if chosen not in groups or WIDE[e] not in groups:
                continue
            for size, members in groups[chosen].items():
                wide = groups[WIDE[e]][size]
                lines.append(f"  {family}, selection {size}: wide - restarts: {difference(wide, members, False, solved_at)}; "
                             f"oracle - restarts (paired): {difference(groups[bound][size], members, True, solved_at)}")
            first = next(iter(groups[bound]))
            lines.append(f"  {family}: wide - oracle bound: "
                         f"{difference(groups[WIDE[e]][first], groups[bound][first], False, solved_at)}")
        return "\n".join(lines)
    return notes


def figure(e: str) -> report.Figure:
    script = SCRIPTS[e]
    small = SMALL[e]
    restarted = tuple(f"best of k {f}({small})" for f in RESTARTED[e])
    wide = WIDE[e]
    budget = report.View("trained parameters (budget)", lambda s: s.params, lambda s: s.model != SEEDS, "equal budget")
    size = report.View("candidates tried (k); the final network is small", lambda s: s.sweep,
                       lambda s: s.model != wide, "equal final size", log_x=2)
    return dataclasses.replace(script.FIGURE, name=f"exploration_{e}", views=(budget, size),
                               title=f"{script.FIGURE.title}: width or restarts", models=(wide, *restarted, ZERO, SEEDS))


def selection_figure(e: str) -> report.Figure:
    script, small = SCRIPTS[e], SMALL[e]
    restarted = tuple(m for f in RESTARTED[e] for m in (f"best of k {f}({small})", oracle(f, small)))
    view = report.View(f"selection set ({SELECTION_UNIT[e]}); k at its largest", lambda s: s.sweep, log_x=2)
    bounds = tuple((oracle(f, small), dict(color=f"C{2 * i + 1}", marker="", linestyle="--"))
                   for i, f in enumerate(RESTARTED[e]))
    chosen = tuple((f"best of k {f}({small})", dict(color=f"C{2 * i + 1}", marker="o")) for i, f in enumerate(RESTARTED[e]))
    return dataclasses.replace(script.FIGURE, name=f"exploration_selection_{e}", views=(view,),
                               title=f"{script.FIGURE.title}: restarts chosen on more data",
                               models=(WIDE[e], *restarted), styles=(*chosen, *bounds, (WIDE[e], dict(color="C0"))))


def job(e: str, s: cli.Settings) -> cli.Job:
    return cli.Job((figure(e), selection_figure(e)), s, PROTOCOLS[e], lambda gen: run(e, s, gen),
                   notes={f"exploration_{e}": comparisons(e), f"exploration_selection_{e}": selection_comparisons(e)})


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS)


def jobs(args) -> list[cli.Job]:
    return [job(e, s) for e, (s, _) in cli.study_settings(args, PROTOCOLS).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
