"""Experiment 1: is the pattern 1101 somewhere in a sequence of 64 random floats?

Naive CNNs (all weights learn) and RandomConv CNNs (frozen random filters) with 1..7 filters, and a
HyperNetwork that generates a 5-parameter network, each trained 500 times with SGD, scored by
validation accuracy on 1000 negative/positive pairs; the hard-coded kernel [1, 1, 0, 1] for scale.
"""
import sys

import torch
from tqdm import tqdm

import cli
import data
import engine
import report
from hypernet import HyperCNN
from models import POOLS, NaiveCNN, hardcoded_cnn

VALIDATION_PAIRS = 1000

FIGURE = report.Figure(
    name="cnn_experiment", title="[1, 1, 0, 1] in sequence", xlabel="trainable parameters",
    ylabel="validation accuracy (%)", solved_label="accuracy = 100 %", x_of=lambda s: s.params, percent=True)


def arguments() -> cli.Parser:
    p = cli.parser(__doc__.split("\n")[0], rounds=500, steps=100, lr=0.1, momentum=0.5, solved_at=1.0)
    p.add_argument("--min-filters", type=int, default=1, help="smallest filter count of the sweep")
    p.add_argument("--max-filters", type=int, default=7, help="largest filter count of the sweep")
    p.add_argument("--pool", choices=POOLS, default="max", help="pooling while training (evaluation always uses max)")
    p.add_argument("--temperature", type=float, default=0.1, help="temperature of --pool lse")
    return p


def sweep(args, gen: torch.Generator, x_val, y_val, families=("Naive", "RandomConv", "HyperNetwork")) -> list[report.Row]:
    """Train and score `args.rounds` models per filter count of each family; one row per model."""
    filters = cli.check_range(args, "min_filters", "max_filters")
    if args.temperature <= 0:
        raise cli.UsageError(f"--temperature must be positive, got {args.temperature}")
    cnn = lambda n, frozen: NaiveCNN(n, frozen_conv=frozen, pool=args.pool, temperature=args.temperature)
    make = {"Naive": lambda n: cnn(n, False), "RandomConv": lambda n: cnn(n, True), "HyperNetwork": lambda n: HyperCNN()}
    convs = [f for f in families if f != "HyperNetwork"]             # Naive and RandomConv share one stack
    stacks = [[(f, n) for f in group for n in filters] for group in (convs, ["HyperNetwork"]) if set(group) & set(families)]
    rows = []
    with tqdm(total=len(stacks) * args.steps, desc="eval_cnn", unit="step") as bar:
        for labels in stacks:
            stack = engine.init_stack([make[f](n) for f, n in labels], args.rounds, gen)
            batch = lambda step: (*data.pattern_pairs((stack.rounds,), gen), data.seeds((stack.rounds,), gen))
            engine.train(stack, batch, args.steps, cli.optimizer(args), on_step=bar.update)
            zero = torch.zeros(1, 2, device=gen.device)
            scores = engine.evaluate(stack, lambda a, b: (x_val, y_val, zero.expand(b - a, 2)), engine.accuracy)
            rows += cli.rows_of(stack, labels, scores)
    return rows


def run(args, gen: torch.Generator) -> list[report.Row]:
    x_val, y_val = data.pattern_validation_set(VALIDATION_PAIRS, gen)
    rows = sweep(args, gen, x_val, y_val)
    net = hardcoded_cnn().to(gen.device)
    score = cli.score_module(net, x_val, y_val, engine.accuracy)
    return rows + [report.Row("hardcoded", 1, net.n_params, 0, score)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), FIGURE, run))
