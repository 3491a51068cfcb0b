"""What does a fresh validation set per round cost? Times the evaluation of eval_cnn's networks (Naive and
RandomConv with 1..7 filters, 500 rounds each: 7000 networks, trained as the protocol says) on one shared
validation set of 1000 pairs, as eval_cnn's left panel scores them; on a fresh set of 1000 pairs per round
that every size of the round meets, as eval_cnn's `own_score` and the studies score them (eval_cnn.validation:
500 sets, each drawn once, all of a round's filters pooled at once); and on a fresh set for every network
(7000 sets, as interval_coverage.py draws them). Draws included.
"""
import argparse
import sys
import time

import torch

import report
import interval_coverage as coverage
import data
import engine
import eval_cnn

FAMILIES = ("Naive", "RandomConv")


def trained_sweep(gen: torch.Generator) -> engine.Stack:
    s = eval_cnn.PROTOCOL
    templates = [eval_cnn.model(s, family, n) for family in FAMILIES for n in range(1, 8)]
    with report.bar(s.steps, "train eval_cnn's networks") as bar:
        return eval_cnn.train(s, gen, templates, bar)


def draw_only(rounds: int, pairs: int, gen: torch.Generator, chunk: int) -> None:
    """Draw every round's set, `chunk` rounds at a time, and drop it."""
    sets = data.per_round_validation(rounds, pairs, gen)
    for start in range(0, rounds, chunk):
        sets(start, min(start + chunk, rounds))


def seconds(evaluate) -> float:
    began = time.perf_counter()
    evaluate()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="validation_cost.py", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, choices=range(1, 11), metavar="1..10", help="timings of each way")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and of the draws")
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(args.seed)
    stack, pairs = trained_sweep(gen), coverage.PAIRS
    x, y = data.pattern_validation_set(pairs, gen)
    ways = {
        "shared set (eval_cnn)": lambda: engine.evaluate(stack, lambda a, b: ((x,), y), engine.accuracy, shared=True),
        "own set per round (eval_cnn.validation)": lambda: eval_cnn.validation(eval_cnn.PROTOCOL, gen,
                                                                               eval_cnn.PROTOCOL.rounds)(stack),
        "own set per network": lambda: coverage.solved(stack, data.per_round_validation(stack.networks, pairs, gen),
                                                       False, 2 * pairs, x.shape[-1]),
        "  of which drawing the sets": lambda: draw_only(stack.networks, pairs, gen, coverage.chunk_for(stack, 2 * pairs, x.shape[-1], False)),
    }
    print(f"| evaluation of {stack.networks} networks | seconds (each of {args.repeats} timings) |\n|---|---|")
    for name, evaluate in ways.items():
        times = [seconds(evaluate) for _ in range(args.repeats)]
        print(f"| {name} | {min(times):.2f} ({', '.join(f'{t:.2f}' for t in times)}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
