"""Experiment 2: learn y = (x1 > 0 and x2 > 0) with a 2-layer ReLU perceptron.

Naive perceptrons of width 1..22 and a HyperNetwork that generates a width-2 network, each trained
50 times with SGD on batches of 16 fresh points (a batch with fewer than 4 positives is skipped),
scored by macro-F1 on 5000 fresh points per round; the hard-coded width-2 solution for scale.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys

import torch
from tqdm import tqdm

import cli
import data
import engine
import report
from hypernet import HyperBoolNet, training_inputs
from models import ACTIVATIONS, NaiveBoolNet, hardcoded_bool_net

BATCH = 16
EVAL_POINTS = 5000
HARDCODED_EVAL_POINTS = 2_000_000      # its F1 is a reference line: measure it to about +-0.0002
HYPER_WIDTH = 2

FIGURE = report.Figure(
    name="bool_experiment", title="y = x1 > 0 AND x2 > 0", ylabel="macro-F1", solved_label="macro-F1 >= --solved-at",
    views=(report.View("hidden width", lambda s: HYPER_WIDTH if s.model == "HyperNetwork" else s.sweep),))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(cli.Settings):
    min_width: int = cli.setting("smallest hidden width of the sweep", cli.positive, "at least 1", default=1)
    max_width: int = cli.setting("largest hidden width of the sweep", cli.positive, "at least 1", default=22)
    activation: str = cli.setting("activation while training (evaluation always uses ReLU)", choices=ACTIVATIONS,
                                  default="relu")

    def widths(self) -> range:
        return cli.sweep_range(self.min_width, self.max_width, "min_width", "max_width")

    def check(self) -> "Settings":
        super().check()
        self.widths()
        return self

    def quick(self) -> "Settings":
        return dataclasses.replace(super().quick(), max_width=min(self.max_width, self.min_width + 2))

    def memory_bytes(self) -> int:
        """Every step's batches of a stack are drawn up front: a few (steps, rounds, 16, 2) float tensors;
        the evaluation holds (256 rounds, 5000 points, width) floats."""
        rounds = self.rounds * len(self.widths())
        return self.steps * rounds * BATCH * 4 * 4 * 3 + 256 * EVAL_POINTS * self.max_width * 4 * 3


PROTOCOL = Settings(rounds=50, steps=500, lr=0.1, momentum=0.0, solved_at=0.948)


def training_data(rounds: int, steps: int, gen: torch.Generator):
    """All batches of all rounds, each round's skipped batches dropped; returns (batch, lengths)."""
    x, y = data.and_points((steps, rounds, BATCH), gen)
    z = data.latents((steps, rounds), gen)
    lengths, order = data.drop_skipped(y.sum(-1) >= data.MIN_POSITIVES)
    kept = (order * rounds + torch.arange(rounds, device=gen.device)).flatten()     # (step, round) -> its batch
    x, y, z = (t.flatten(0, 1).index_select(0, kept).view(t.shape) for t in (x, y, z))   # one gather, not 500
    return (lambda step: ((x[step], z[step]), y[step])), lengths


def fresh_points(gen: torch.Generator, count: int = EVAL_POINTS):
    """`engine.evaluate`'s data: `count` fresh points for every round (hypernetworks at z = 0)."""
    def points(start: int, stop: int):
        x, y = data.and_points((stop - start, count), gen)
        return (x,), y
    return points


def train(s: Settings, gen: torch.Generator, templates: list[torch.nn.Module], bar: tqdm,
          lrs: list[float] | None = None) -> engine.Stack:
    """`s.rounds` fresh copies of each template, trained as the protocol says, skipped batches included
    (with `lrs`, each template's copies at their own learning rate)."""
    stack = engine.init_stack(templates, s.rounds, gen)
    batches, lengths = training_data(stack.rounds, s.steps, gen)

    def batch(step: int):
        (x, z), y = batches(step)
        return training_inputs(templates[0], x, z), y
    engine.train(stack, batch, s.steps, cli.optimizer_for(s, s.rounds, gen.device, lrs), lengths=lengths,
                 on_step=bar.update)
    bar.update(s.steps - min(s.steps, int(lengths.max())))      # steps every round skipped
    return stack


def model(s: Settings, family: str, width: int) -> torch.nn.Module:
    """A fresh network of the family ("Naive" or "HyperNetwork") as the settings say."""
    return HyperBoolNet() if family == "HyperNetwork" else NaiveBoolNet(width, activation=s.activation, schedule=s.schedule)


def sweep(s: Settings, gen: torch.Generator, families=("Naive", "HyperNetwork")) -> list[report.Row]:
    """Train and score `s.rounds` models per width of each family; one row per model."""
    rows = []
    with cli.bar(len(families) * s.steps, "eval_bool") as bar:
        for family in families:
            stack = train(s, gen, [model(s, family, w) for w in s.widths()], bar)
            scored = engine.evaluate(stack, fresh_points(gen), engine.macro_f1)
            rows += cli.rows_of(stack, [(family, w) for w in s.widths()], scored)
    return rows


def run(s: Settings, gen: torch.Generator) -> list[report.Row]:
    rows = sweep(s, gen)
    net = hardcoded_bool_net().to(gen.device)
    x, y = data.and_points((HARDCODED_EVAL_POINTS,), gen)
    score = cli.score_module(net, x, y, engine.macro_f1)
    return rows + [report.Row("hardcoded", HYPER_WIDTH, net.final_size, 0, score)]


def arguments() -> cli.Parser:
    return cli.experiment_parser("eval_bool.py", __doc__, PROTOCOL)


def jobs(args) -> list[cli.Job]:
    return [cli.single(FIGURE, cli.settings_of(args, PROTOCOL), PROTOCOL, run)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
