"""Experiment 2: learn y = (x1 > 0 and x2 > 0) with a 2-layer ReLU perceptron.

Naive perceptrons of width 1..22 and a HyperNetwork that generates a width-2 network, each trained
50 times with SGD on batches of 16 fresh points (a batch with fewer than 4 positives is skipped),
scored by macro-F1 on 5000 fresh points per round; the hard-coded width-2 solution for scale.
"""
import sys

import torch
from tqdm import tqdm

import cli
import data
import engine
import report
from hypernet import HyperBoolNet
from models import ACTIVATIONS, NaiveBoolNet, hardcoded_bool_net

BATCH = 16
EVAL_POINTS = 5000
HARDCODED_EVAL_POINTS = 2_000_000      # its F1 is a reference line: measure it to about +-0.0002
HYPER_WIDTH = 2

FIGURE = report.Figure(
    name="bool_experiment", title="y = x1 > 0 AND x2 > 0", ylabel="macro-F1", solved_label="macro-F1 >= --solved-at",
    views=(report.View("hidden width", lambda s: HYPER_WIDTH if s.model == "HyperNetwork" else s.sweep),))


def add_flags(p: cli.Parser, shown: bool = True) -> None:
    """This experiment's own flags (hidden from --help where another experiment's script accepts them)."""
    h = cli.help_text(shown)
    p.add_argument("--min-width", type=int, default=1, help=h("smallest hidden width of the sweep"))
    p.add_argument("--max-width", type=int, default=22, help=h("largest hidden width of the sweep"))
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help=h("activation while training (evaluation always uses ReLU)"))


def arguments() -> cli.Parser:
    p = cli.parser(__doc__.split("\n")[0], rounds=50, steps=500, lr=0.1, momentum=0.0, solved_at=0.948)
    add_flags(p)
    return p


def check(args) -> range:
    """Check this experiment's own flags; returns the hidden widths of the sweep."""
    return cli.check_range(args, "min_width", "max_width")


def training_data(rounds: int, steps: int, gen: torch.Generator):
    """All batches of all rounds, each round's skipped batches dropped; returns (batch, lengths)."""
    x, y = data.and_points((steps, rounds, BATCH), gen)
    z = data.seeds((steps, rounds), gen)
    lengths, order = data.drop_skipped(y.sum(-1) >= data.MIN_POSITIVES)
    kept = (order * rounds + torch.arange(rounds, device=gen.device)).flatten()     # (step, round) -> its batch
    x, y, z = (t.flatten(0, 1).index_select(0, kept).view(t.shape) for t in (x, y, z))   # one gather, not 500
    return (lambda step: (x[step], y[step], z[step])), lengths


def fresh_points(gen: torch.Generator):
    def points(start: int, stop: int):
        x, y = data.and_points((stop - start, EVAL_POINTS), gen)
        return x, y, torch.zeros(stop - start, 2, device=gen.device)
    return points


def train(args, gen: torch.Generator, templates: list[torch.nn.Module], bar: tqdm) -> engine.Stack:
    """`args.rounds` fresh copies of each template, trained as the protocol says, skipped batches included."""
    stack = engine.init_stack(templates, args.rounds, gen)
    batch, lengths = training_data(stack.rounds, args.steps, gen)
    engine.train(stack, batch, args.steps, cli.optimizer(args), lengths=lengths, on_step=bar.update)
    bar.update(args.steps - min(args.steps, int(lengths.max())))      # steps every round skipped
    return stack


def model(args, family: str, width: int) -> torch.nn.Module:
    """A fresh network of the family ("Naive" or "HyperNetwork") as the flags configure it."""
    return HyperBoolNet() if family == "HyperNetwork" else NaiveBoolNet(width, activation=args.activation)


def sweep(args, gen: torch.Generator, families=("Naive", "HyperNetwork")) -> list[report.Row]:
    """Train and score `args.rounds` models per width of each family; one row per model."""
    widths = check(args)
    rows = []
    with tqdm(total=len(families) * args.steps, desc="eval_bool", unit="step") as bar:
        for family in families:
            stack = train(args, gen, [model(args, family, w) for w in widths], bar)
            scores = engine.evaluate(stack, fresh_points(gen), engine.macro_f1)
            rows += cli.rows_of(stack, [(family, w) for w in widths], scores)
    return rows


def run(args, gen: torch.Generator) -> list[report.Row]:
    rows = sweep(args, gen)
    net = hardcoded_bool_net().to(gen.device)
    x, y = data.and_points((HARDCODED_EVAL_POINTS,), gen)
    score = cli.score_module(net, x, y, engine.macro_f1)
    return rows + [report.Row("hardcoded", HYPER_WIDTH, net.n_params, 0, score)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), FIGURE, run))
