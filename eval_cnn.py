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
    name="cnn_experiment", title="[1, 1, 0, 1] in sequence", ylabel="validation accuracy (%)",
    solved_label="accuracy = 100 %", views=(report.View("trainable parameters", lambda s: s.params),), percent=True)


def model(args, family: str, filters: int) -> torch.nn.Module:
    """A fresh network of the family ("Naive", "RandomConv" or "HyperNetwork") as the flags configure it."""
    if family == "HyperNetwork":
        return HyperCNN()
    return NaiveCNN(filters, frozen_conv=family == "RandomConv", pool=args.pool, temperature=args.temperature)


def add_flags(p: cli.Parser, shown: bool = True) -> None:
    """This experiment's own flags (hidden from --help where another experiment's script accepts them)."""
    h = cli.help_text(shown)
    p.add_argument("--min-filters", type=int, default=1, help=h("smallest filter count of the sweep"))
    p.add_argument("--max-filters", type=int, default=7, help=h("largest filter count of the sweep"))
    p.add_argument("--pool", choices=POOLS, default="max", help=h("pooling while training (evaluation always uses max)"))
    p.add_argument("--temperature", type=float, default=0.1, help=h("temperature of --pool lse"))


def arguments() -> cli.Parser:
    p = cli.parser(__doc__.split("\n")[0], rounds=500, steps=100, lr=0.1, momentum=0.5, solved_at=1.0)
    add_flags(p)
    return p


def check(args) -> range:
    """Check this experiment's own flags; returns the filter counts of the sweep."""
    if args.temperature <= 0:
        raise cli.UsageError(f"--temperature must be positive, got {args.temperature}")
    return cli.check_range(args, "min_filters", "max_filters")


def train(args, gen: torch.Generator, templates: list[torch.nn.Module], bar: tqdm) -> engine.Stack:
    """`args.rounds` fresh copies of each template, trained as the protocol says on fresh pairs."""
    stack = engine.init_stack(templates, args.rounds, gen)
    batch = lambda step: (*data.pattern_pairs((stack.rounds,), gen), data.seeds((stack.rounds,), gen))
    engine.train(stack, batch, args.steps, cli.optimizer(args), on_step=bar.update)
    return stack


def shared_set(x: torch.Tensor, y: torch.Tensor):
    """`engine.evaluate`'s data: the same sequences for every round, hypernetworks at z = 0."""
    zero = torch.zeros(1, 2, device=x.device)
    return lambda start, stop: (x, y, zero.expand(stop - start, 2))


def sweep(args, gen: torch.Generator, x_val, y_val, families=("Naive", "RandomConv", "HyperNetwork")) -> list[report.Row]:
    """Train and score `args.rounds` models per filter count of each family; one row per model."""
    filters = check(args)
    convs = [f for f in families if f != "HyperNetwork"]             # Naive and RandomConv share one stack
    stacks = [[(f, n) for f in group for n in filters] for group in (convs, ["HyperNetwork"]) if set(group) & set(families)]
    rows = []
    with tqdm(total=len(stacks) * args.steps, desc="eval_cnn", unit="step") as bar:
        for labels in stacks:
            stack = train(args, gen, [model(args, f, n) for f, n in labels], bar)
            scores = engine.evaluate(stack, shared_set(x_val, y_val), engine.accuracy)
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
