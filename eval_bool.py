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
DATA_BLOCK_BYTES = 128 * 2 ** 20       # the inputs of every step of a block of rounds, drawn at once

FIGURE = report.Figure(
    name="bool_experiment", title="y = x1 > 0 AND x2 > 0", ylabel="macro-F1", solved_label="macro-F1 >= {solved_at:g}",
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
        """A block of rounds' batches for every step are drawn at once: a few (steps, rounds, 16, 2)
        float tensors, rounds at most `block_rounds`; the evaluation holds (256 rounds, 5000 points,
        width) floats; the stack's parameters and optimizer state grow with the rounds."""
        rounds = self.rounds * len(self.widths())
        block = min(rounds, block_rounds(self.steps)) * self.steps * BATCH * 2 * 4 * 3
        return block + 256 * EVAL_POINTS * self.max_width * 4 * 3 + rounds * (4 * self.max_width + 1) * 4 * 8


PROTOCOL = Settings(rounds=50, steps=500, lr=0.1, momentum=0.0, solved_at=0.948)


def block_rounds(steps: int) -> int:
    """How many rounds' training data fit DATA_BLOCK_BYTES (at least one)."""
    return max(1, DATA_BLOCK_BYTES // (steps * BATCH * 2 * 4))


def training_data(rounds: int, steps: int, gen: torch.Generator):
    """All batches of `rounds` rounds, each round's skipped batches dropped; returns (batch, lengths)."""
    x, y = data.and_points((steps, rounds, BATCH), gen)
    z = data.latents((steps, rounds), gen)
    lengths, order = data.drop_skipped(y.sum(-1) >= data.MIN_POSITIVES)
    kept = (order * rounds + torch.arange(rounds, device=gen.device)).flatten()     # (step, round) -> its batch
    gather = lambda t: t.flatten(0, 1).index_select(0, kept).view(t.shape)       # one gather, not 500
    x = gather(x)                                                                # each original freed in turn
    y = gather(y)
    z = gather(z)
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
    return fit(s, gen, engine.init_stack(templates, s.rounds, gen), bar, lrs)


def fit(s: Settings, gen: torch.Generator, stack: engine.Stack, bar: tqdm, lrs: list[float] | None = None
        ) -> engine.Stack:
    """Train a given stack (groups of `s.rounds` rounds) in place, as `train` does."""
    optimizer = cli.optimizer_for(s, s.rounds, gen.device, lrs)
    size = block_rounds(s.steps)
    blocks = range(0, stack.rounds, size)
    for start in blocks:                        # the data of one block of rounds at a time: bounded memory
        part = stack.rows(start, min(start + size, stack.rounds))
        batches, lengths = training_data(part.rounds, s.steps, gen)

        def batch(step: int):
            (x, z), y = batches(step)
            return training_inputs(stack.groups[0].template, x, z), y
        engine.train(part, batch, s.steps, optimizer, lengths=lengths, rows=slice(start, start + part.rounds),
                     on_step=lambda: bar.update(1 / len(blocks)))
        bar.update((s.steps - min(s.steps, int(lengths.max()))) / len(blocks))    # steps every round skipped
        stack.put(part, start)
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
