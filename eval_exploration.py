"""Is width exploration? One wide network against the best of many small ones, at equal budgets.

If over-parameterization works as exploration, then exploring explicitly (training k small networks
independently and keeping the best) should do as well as one network k times wider, at the same number
of trained parameters, and it leaves a small final network.
  - Experiment 1 (1101): one Naive(n) (5n + 1 trained parameters) against the best of k = 1..6 Naive(1)
    (6k) and the best of 3k RandomConv(1) (2 trained parameters each: 6k as well).
  - Experiment 2 (AND): one Naive(w) (4w + 1) against the best of k = 1..10 Naive(2) (9k).
  - Both: the trained HyperNetwork's network at z = 0 (as in the faithful runs) against the best of
    k = 1, 2, 4, ..., 64 networks it generates from seeds z ~ N(0, I) drawn after training.
Every network is trained and scored as in the faithful runs (same rounds, steps, data and metric). A
round's best candidate is the one with the best score on a selection set of fresh data, never on the
validation set; that network is then scored on the validation set like any model.
Writes exploration_cnn.{png,csv,json} and exploration_bool.{png,csv,json} in --out.
"""
import dataclasses
import sys

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
from hypernet import SEED_DIM

WIDE = {"cnn": "wide Naive(n)", "bool": "wide Naive(w)"}
SEEDS, ZERO = "HyperNetwork, best of k seeds", "HyperNetwork, z = 0"
SMALL = {"cnn": 1, "bool": 2}                              # the small network: 1 filter, width 2
RESTARTED = {"cnn": ("Naive", "RandomConv"), "bool": ("Naive",)}
SELECTION = {"cnn": 200, "bool": 500}                      # pairs of sequences, points per round
RESTARTS = {"cnn": 6, "bool": 10}


def best_of(selection: Tensor, validation: Tensor, k: int) -> Tensor:
    """Per round, the validation score of the candidate, among the first k, best on the selection set.

    selection, validation: (R, C) scores of each round's C candidates; a tie goes to the earlier one.
    """
    pick = selection[:, :k].argmax(1, keepdim=True)
    return validation.gather(1, pick)[:, 0]


def rows_of(model: str, sweep: int, budget: int, scores: Tensor) -> list[report.Row]:
    return [report.Row(model, sweep, budget, r, s) for r, s in enumerate(scores.tolist())]


def by_round(scores: Tensor, rounds: int) -> Tensor:
    """Scores of a candidate-major stack (row c * rounds + r is candidate c of round r) -> (rounds, C)."""
    return scores.view(-1, rounds).t()


def candidates(args, gen: torch.Generator, script, bar: tqdm, selection, validation,
               score) -> dict[str, tuple[Tensor, Tensor]]:
    """Train every restarted family's candidates; per family, (selection, validation) scores (R, C).

    A family's candidates are as many as a budget of --restarts small Naive networks buys: for
    RandomConv(1), which trains 2 parameters against Naive(1)'s 6, three times as many.
    """
    small = {f: script.model(args, f, SMALL[args.experiment]) for f in RESTARTED[args.experiment]}
    counts = {f: args.restarts * small["Naive"].n_params // net.n_params for f, net in small.items()}
    stack = script.train(args, gen, [small[f] for f in small for _ in range(counts[f])], bar)
    scored = [by_round(engine.evaluate(stack, s, score), args.rounds) for s in (selection, validation)]
    out, start = {}, 0
    for f, count in counts.items():
        out[f] = tuple(s[:, start:start + count] for s in scored)
        start += count
    return out


def hypotheses(args, gen: torch.Generator, script, bar: tqdm, selection, validation, score) -> tuple[Tensor, Tensor, int]:
    """Train the HyperNetwork; (selection, validation) scores (R, 1 + --samples) of the networks it
    generates at z = 0 (column 0) and at --samples seeds z ~ N(0, I), and its trained parameter count."""
    hyper = script.model(args, "HyperNetwork", SMALL[args.experiment])
    stack = script.train(args, gen, [hyper], bar)
    rounds, dev = args.rounds, gen.device
    seeds = torch.cat([torch.zeros(rounds, SEED_DIM, device=dev), data.seeds((args.samples * rounds,), gen, SEED_DIM)])
    copies = 1 + args.samples
    tiled = {name: p.repeat(copies, *([1] * (p.dim() - 1))) for name, p in stack.params.items()}
    generated = engine.stack_of(hyper.generate(torch.zeros(SEED_DIM, device=dev)), hyper.stacked_generate(tiled, seeds))
    sel, val = (by_round(engine.evaluate(generated, s, score), rounds) for s in (selection, validation))
    return sel, val, sum(p.numel() for p in hyper.parameters())


def powers_of_two(top: int) -> list[int]:
    """1, 2, 4, ... up to top, and top itself."""
    return sorted({2 ** i for i in range(top.bit_length()) if 2 ** i <= top} | {top})


def explore(args, gen: torch.Generator, script, selection, validation, score) -> list[report.Row]:
    """The best-of-k rows of the restarted families and of the sampled hypotheses."""
    rows = []
    with tqdm(total=2 * args.steps, desc=f"exploration ({args.experiment})", unit="step") as bar:
        pools = candidates(args, gen, script, bar, selection, validation, score)
        sel, val, hyper_params = hypotheses(args, gen, script, bar, selection, validation, score)
    small = SMALL[args.experiment]
    for family, (s, v) in pools.items():
        each = script.model(args, family, small).n_params
        for k in range(1, s.shape[1] + 1):
            rows += rows_of(f"best of k {family}({small})", k, k * each, best_of(s, v, k))
    rows += rows_of(ZERO, 1, hyper_params, val[:, 0])
    for k in powers_of_two(args.samples):
        rows += rows_of(SEEDS, k, hyper_params, best_of(sel[:, 1:], val[:, 1:], k))
    return rows


def check(args) -> None:
    for name in ("restarts", "samples", "selection"):
        if getattr(args, name) < 1:
            raise cli.UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.quick:
        args.restarts, args.samples = min(args.restarts, 3), min(args.samples, 4)


def run_cnn(args, gen: torch.Generator) -> list[report.Row]:
    check(args)
    x_val, y_val = data.pattern_validation_set(eval_cnn.VALIDATION_PAIRS, gen)
    x_sel, y_sel = data.pattern_validation_set(args.selection, gen)
    wide = eval_cnn.sweep(args, gen, x_val, y_val, families=("Naive",))
    rows = [dataclasses.replace(r, model=WIDE["cnn"]) for r in wide]
    return rows + explore(args, gen, eval_cnn, eval_cnn.shared_set(x_sel, y_sel), eval_cnn.shared_set(x_val, y_val),
                          engine.accuracy)


def per_round(x: Tensor, y: Tensor):
    """`engine.evaluate`'s data for a candidate-major stack: row i is scored on round i % R's own points."""
    rounds = x.shape[0]

    def points(start: int, stop: int):
        rows = torch.arange(start, stop, device=x.device) % rounds
        return x[rows], y[rows], torch.zeros(stop - start, SEED_DIM, device=x.device)
    return points


def run_bool(args, gen: torch.Generator) -> list[report.Row]:
    check(args)
    wide = eval_bool.sweep(args, gen, families=("Naive",))
    rows = [dataclasses.replace(r, model=WIDE["bool"]) for r in wide]
    x_val, y_val = data.and_points((args.rounds, eval_bool.EVAL_POINTS), gen)
    x_sel, y_sel = data.and_points((args.rounds, args.selection), gen)
    return rows + explore(args, gen, eval_bool, per_round(x_sel, y_sel), per_round(x_val, y_val), engine.macro_f1)


def label(model: str, sweep: int) -> str:
    """A model name with its sweep value in: "best of k Naive(1)" at 6 is "best of 6 Naive(1)"."""
    return f"wide Naive({sweep})" if model in WIDE.values() else model.replace(" k ", f" {sweep} ")


def comparisons(experiment: str) -> cli.Notes:
    """The key differences, with 95 % bootstrap intervals: width against restarts at the largest
    budget, the best sampled hypothesis against z = 0 (paired by round), restarts against samples."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        groups: dict[str, dict[int, list[report.Row]]] = {}
        for r in rows:
            groups.setdefault(r.model, {}).setdefault(r.sweep, []).append(r)
        largest = {model: max(by_sweep) for model, by_sweep in groups.items()}

        def line(a: str, b: str, paired: bool) -> str:
            (ra, rb) = (sorted(groups[m][largest[m]], key=lambda r: r.round) for m in (a, b))
            sa, sb = (np.array([r.score for r in rs]) for rs in (ra, rb))
            mean = report.difference_ci(sa, sb, paired)
            solved = report.difference_ci(sa >= solved_at, sb >= solved_at, paired)
            name = lambda m, rs: f"{label(m, largest[m])} [{rs[0].params}]"
            return (f"  {name(a, ra)} - {name(b, rb)}{' (paired)' if paired else ''}: mean {mean[0]:+.4f} "
                    f"[{mean[1]:+.4f}, {mean[2]:+.4f}], solved {100 * solved[0]:+.1f} "
                    f"[{100 * solved[1]:+.1f}, {100 * solved[2]:+.1f}] points")
        small = SMALL[experiment]
        pairs = [(WIDE[experiment], f"best of k {f}({small})", False) for f in RESTARTED[experiment]]
        pairs += [(SEEDS, ZERO, True), (f"best of k Naive({small})", SEEDS, False)]
        lines = [line(a, b, paired) for a, b, paired in pairs if a in groups and b in groups]
        header = "differences a - b at each one's largest sweep point [trained parameters], 95 % bootstrap:"
        return "\n".join([header] + lines)
    return notes


def figure(experiment: str) -> report.Figure:
    script = {"cnn": eval_cnn, "bool": eval_bool}[experiment]
    small = SMALL[experiment]
    restarted = tuple(f"best of k {f}({small})" for f in RESTARTED[experiment])
    wide = WIDE[experiment]
    budget = report.View("trained parameters (budget)", lambda s: s.params, lambda s: s.model != SEEDS, "equal budget")
    size = report.View("candidates tried (k); the final network is small", lambda s: s.sweep,
                       lambda s: s.model != wide, "equal final size", log2_x=True)
    return dataclasses.replace(script.FIGURE, name=f"exploration_{experiment}", views=(budget, size),
                               title=f"{script.FIGURE.title}: width or restarts", models=(wide, *restarted, ZERO, SEEDS))


def arguments(experiment: str) -> cli.Parser:
    script, other = (eval_cnn, eval_bool) if experiment == "cnn" else (eval_bool, eval_cnn)
    p = cli.study_parser(f"eval_exploration.py ({experiment})", script, [other])
    p.description = __doc__.split("\n")[0]
    p.add_argument("--restarts", type=int, default=RESTARTS[experiment],
                   help=f"largest k of best of k small Naive (CNN default {RESTARTS['cnn']}, AND {RESTARTS['bool']})")
    p.add_argument("--samples", type=int, default=64, help="largest k of best of k sampled hypotheses (k = 1, 2, 4, ...)")
    p.add_argument("--selection", type=int, default=SELECTION[experiment],
                   help=f"selection set: pairs of sequences (CNN, default {SELECTION['cnn']}) or points per round "
                        f"(AND, default {SELECTION['bool']})")
    p.set_defaults(experiment=experiment)
    return p


def main(argv: list[str] | None = None) -> int:
    runs = {"cnn": run_cnn, "bool": run_bool}
    return cli.main_each([(arguments(e), figure(e), runs[e], comparisons(e)) for e in runs], argv)


if __name__ == "__main__":
    sys.exit(main())
