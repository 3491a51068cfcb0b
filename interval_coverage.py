"""Do the intervals of the solved share hold? Coverage of 95 % Wilson intervals, checked by repetition.

For a fixed set of trained networks, repeat: draw validation data, score every network ("solved" = every
sequence of its validation set right), take the Wilson interval of the solved share, and see whether it
covers the truth. Two ways to draw the data:
  OLD  one validation set of the protocol's size shared by every network (rounds move together with it);
  NEW  each network its own fresh validation set of that size (rounds independent).
Truth: the expected solved share of these networks on a fresh protocol-size set, the mean over networks
of P(network solves a random set). It is estimated on pools of sequences, each network its own, each
much larger than a set: per network and class, the share of the pool's subsets of 1000 that hold no
error, C(M - e, n) / C(M, n) (M sequences of the class in the pool, e of them wrong, n = 1000), which is
unbiased; repeated --pools times, the spread of the repeats gives its standard error.
Cases: (a) Naive(7) under the protocol; (b) Naive(64) on pattern 1100, the protocol otherwise.
Writes coverage.csv (one row per case and method) and repetitions.csv (every interval) to --out, and the
table to stdout.
"""
import argparse
import csv
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import data
import engine
import eval_cnn
import report
from report import wilson_ci

SOLVED_AT = eval_cnn.PROTOCOL.solved_at
PAIRS = 1000                             # the protocol's validation set: 1000 negative/positive pairs
MEMORY_BUDGET = 16 * 2 ** 20             # bytes of the largest working tensor of one evaluation chunk


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    pattern: str
    filters: int
    networks: int                        # by default


CASES = (Case("Naive(7) on 1101", "1101", 7, 500), Case("Naive(64) on 1100", "1100", 64, 200))
Draw = Callable[[], torch.Tensor]        # one repetition: which networks solved their validation data (R,)


# ----------------------------------------------------------------------------- scoring

def chunk_for(stack: engine.Stack, sequences: int, seq_len: int, shared: bool) -> int:
    """Rounds per evaluation chunk that keep the largest working tensor within MEMORY_BUDGET: (B, chunk*F)
    for a shared set, (chunk, B, F, positions) for a set per round."""
    filters = max(p.shape[1] for p in stack.params.values() if p.dim() > 1)
    per_round = 4 * sequences * filters * (2 if shared else seq_len)
    return max(1, MEMORY_BUDGET // per_round)


def solved(stack: engine.Stack, batches: Callable[[int, int], engine.Batch], shared: bool, sequences: int,
           seq_len: int) -> torch.Tensor:
    """Which rounds get every sequence of their data right."""
    scores, _ = engine.evaluate(stack, batches, engine.accuracy, shared, chunk_for(stack, sequences, seq_len, shared))
    return scores >= SOLVED_AT


def old_draw(stack: engine.Stack, gen: torch.Generator, pattern: data.Pattern, pairs: int = PAIRS) -> Draw:
    """OLD: one validation set, shared by every round."""
    def draw() -> torch.Tensor:
        x, y = data.pattern_validation_set(pairs, gen, pattern)
        return solved(stack, lambda start, stop: ((x,), y), True, 2 * pairs, pattern.seq_len)
    return draw


def new_draw(stack: engine.Stack, gen: torch.Generator, pattern: data.Pattern, pairs: int = PAIRS) -> Draw:
    """NEW: every round its own fresh validation set."""
    def draw() -> torch.Tensor:
        batches = data.per_round_validation(stack.networks, pairs, gen, pattern)
        return solved(stack, batches, False, 2 * pairs, pattern.seq_len)
    return draw


METHODS = {"OLD: shared set": old_draw, "NEW: own set per round": new_draw}


# ----------------------------------------------------------------------------- truth

def chance_without_error(errors: torch.Tensor, pool: int, n: int) -> torch.Tensor:
    """P(n sequences drawn without replacement from `pool`, `errors` of them wrong, are all right):
    C(pool - errors, n) / C(pool, n); an unbiased estimate of (1 - error rate)^n."""
    e = errors.double()
    log = (torch.lgamma(pool - e + 1) - torch.lgamma((pool - e - n + 1).clamp(min=1))
           - math.lgamma(pool + 1) + math.lgamma(pool - n + 1))
    return torch.where(pool - e >= n, log.exp(), 0.0)


def solve_chance(stack: engine.Stack, gen: torch.Generator, pattern: data.Pattern, pool: int, pairs: int = PAIRS
                 ) -> torch.Tensor:
    """Per round, an unbiased estimate of P(it solves a fresh set of `pairs` pairs), from a pool of `pool`
    pairs of its own (pools shared by the rounds would move all their estimates together)."""
    def score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        chance = torch.ones(len(logits), dtype=torch.float64, device=logits.device)
        for kept in (y == 0, y == 1):
            errors = ((1 - engine.accuracy(logits[:, kept], y[kept])) * pool).round()
            chance *= chance_without_error(errors, pool, pairs)
        return chance
    pools = data.per_round_validation(stack.networks, pool, gen, pattern)
    scores, _ = engine.evaluate(stack, pools, score, False, chunk_for(stack, 2 * pool, pattern.seq_len, False))
    return scores


def truth(stack: engine.Stack, gen: torch.Generator, pattern: data.Pattern, pools: int, pool: int,
          pairs: int = PAIRS, on_pool: Callable[[], object] = lambda: None) -> tuple[float, float]:
    """The expected solved share on a fresh set of `pairs` pairs, and its standard error over `pools` pools."""
    shares = torch.tensor([(solve_chance(stack, gen, pattern, pool, pairs).mean().item(), on_pool())[0]
                           for _ in range(pools)])
    return shares.mean().item(), (shares.std() / math.sqrt(pools)).item()


# ----------------------------------------------------------------------------- coverage

@dataclasses.dataclass(frozen=True)
class Interval:
    solved: int
    rounds: int
    low: float
    high: float


def intervals(draw: Draw, repetitions: int, on_draw: Callable[[], object] = lambda: None) -> list[Interval]:
    """The Wilson interval of the solved share on each of `repetitions` draws."""
    out = []
    for _ in range(repetitions):
        hits = draw()
        k, n = int(hits.sum()), len(hits)
        out.append(Interval(k, n, *wilson_ci(k, n)))
        on_draw()
    return out


def coverage(found: list[Interval], true_share: float) -> tuple[float, float]:
    """The share of intervals that cover `true_share`, and their mean width."""
    covered = sum(i.low <= true_share <= i.high for i in found)
    return covered / len(found), sum(i.high - i.low for i in found) / len(found)


# ----------------------------------------------------------------------------- the script

class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (but None), the docstring kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="interval_coverage.py", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--networks", type=int, default=None,
                   help="trained networks per case (default: " + ", ".join(f"{c.networks} for {c.name}" for c in CASES) + ")")
    p.add_argument("--repetitions", type=int, default=40, help="validation draws per case and method")
    p.add_argument("--pools", type=int, default=4, help="pools per network for the truth")
    p.add_argument("--pool", type=int, default=3000, help=f"negative/positive pairs per pool (at least {PAIRS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the one generator every draw comes from")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when present")
    p.add_argument("--out", type=Path, default=Path("runs/coverage"), help="folder of the CSV files")
    p.add_argument("--quick", action="store_true", help="smoke run: 20 networks, 5 repetitions, 3 pools of 1000 pairs")
    args = p.parse_args(argv)
    if args.quick:
        args.networks, args.repetitions, args.pools, args.pool = 20, 5, 3, PAIRS
    for name, low in (("networks", 1), ("repetitions", 1), ("pools", 2), ("pool", PAIRS)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            raise UsageError(f"--{name} must be at least {low}, got {getattr(args, name)}")
    if not 0 <= args.seed < 2 ** 63:
        raise UsageError(f"--seed must be an integer in [0, 2**63 - 1], got {args.seed}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    return args


def device(name: str) -> torch.device:
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def trained(case: Case, networks: int, gen: torch.Generator) -> tuple[engine.Stack, data.Pattern]:
    """`networks` Naive networks of the case, trained as the protocol says (on the case's pattern)."""
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=networks, pattern=case.pattern)
    with report.bar(s.steps, f"train {case.name}") as bar:
        return eval_cnn.train(s, gen, [eval_cnn.model(s, "Naive", case.filters)], bar), data.Pattern(case.pattern)


def study(case: Case, args: argparse.Namespace, gen: torch.Generator) -> tuple[list[dict], list[dict]]:
    """The summary rows (one per method) and the interval of every repetition of one case."""
    networks = args.networks or case.networks
    stack, pattern = trained(case, networks, gen)
    with report.bar(args.pools, f"truth {case.name}") as bar:
        true_share, se = truth(stack, gen, pattern, args.pools, args.pool, on_pool=bar.update)
    summary, every = [], []
    for method, make in METHODS.items():
        with report.bar(args.repetitions, f"{method[:3]} {case.name}") as bar:
            found = intervals(make(stack, gen, pattern), args.repetitions, bar.update)
        covered, width = coverage(found, true_share)
        summary.append({"case": case.name, "method": method, "networks": networks,
                        "repetitions": args.repetitions, "truth": true_share, "truth_se": se,
                        "mean_solved": sum(i.solved for i in found) / len(found) / networks,
                        "coverage": covered, "mean_width": width})
        every += [{"case": case.name, "method": method, "repetition": r, "solved": i.solved, "networks": i.rounds,
                   "low": i.low, "high": i.high, "covers": i.low <= true_share <= i.high} for r, i in enumerate(found)]
    return summary, every


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: list[dict]) -> str:
    lines = ["| case | networks | method | truth ± SE | mean solved | coverage | mean width |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['networks']} | {r['method']} | {r['truth']:.2%} ± {r['truth_se']:.2%} | {r['mean_solved']:.2%} "
              f"| {r['coverage']:.0%} ({r['repetitions']} draws) | {r['mean_width']:.2%} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except UsageError as e:
        print(f"interval_coverage.py: error: {e}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    gen = torch.Generator(device(args.device)).manual_seed(args.seed)
    summary, every = [], []
    for case in CASES:
        rows, reps = study(case, args, gen)
        summary, every = summary + rows, every + reps
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "coverage.csv", summary)
    write_csv(args.out / "repetitions.csv", every)
    print(markdown(summary))
    print(f"\nTruth from {args.pools} pools of {args.pool} pairs per network; "
          f"{time.perf_counter() - began:.0f} s; CSV in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
