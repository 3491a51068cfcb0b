"""Experiment 2: learn y = (x1 > 0 and x2 > 0) with a 2-layer ReLU perceptron.

Naive perceptrons of width 1..22 and a HyperNetwork that generates a width-2 network, each trained
50 times with SGD on batches of 16 fresh points (a batch with fewer than 4 positives is skipped),
scored by macro-F1 on 5000 fresh points per round; the hard-coded width-2 solution for scale.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from typing import Callable

import torch

import cli
import data
import engine
import report
from hypernet import HyperBoolNet, training_inputs
from models import ACTIVATIONS, NaiveBoolNet, hardcoded_bool_net

# ----------------------------------------------------------------------------- what a study needs of it
NAME = "bool"
FAMILIES = ("Naive", "HyperNetwork")
EVAL_POINTS = 5000
METRIC = engine.macro_f1
SMALL = 2                                   # the smallest network that solves the task: width 2
SIZE = "width"                              # what the sweep value counts
SELECTION_UNIT = "points per round"         # what a selection-set size counts
SURROGATES = {                              # smooth stand-ins for ReLU while training (settings changes)
    "softplus": dict(activation="softplus"),
    "leaky ReLU": dict(activation="leaky"),
    "softplus annealed": dict(activation="softplus", schedule="linear"),     # to ReLU at the last step
}

BATCH = 16                                  # examples (points) per training step
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

    def sizes(self) -> range:
        """The sweep: hidden widths."""
        return cli.sweep_range(self.min_width, self.max_width, "min_width", "max_width")

    def check(self) -> "Settings":
        super().check()
        self.sizes()
        return self

    def quick(self) -> "Settings":
        return dataclasses.replace(super().quick(), max_width=min(self.max_width, self.min_width + 2))

    def memory_bytes(self) -> int:
        """A block of rounds' batches for every step are drawn at once: a few (steps, rounds, 16, 2)
        float tensors, rounds at most `block_rounds`; the evaluation holds (256 rounds, 5000 points,
        width) floats; the stack's parameters and optimizer state grow with the rounds."""
        rounds = self.rounds * len(self.sizes())
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


def points(count: int, gen: torch.Generator, cycle: int | None) -> engine.Scorer:
    """`count` fresh points for every round, scored by macro-F1 (hypernetworks at z = 0). With `cycle`,
    the points of `cycle` rounds are drawn at once and row i of a stack is scored on round i % cycle's
    (every candidate of a round on the same points); without, drawn as the rounds are scored."""
    if cycle is None:
        def fresh(start: int, stop: int):
            x, y = data.and_points((stop - start, count), gen)
            return (x,), y
        return engine.Scorer(fresh, METRIC)
    x, y = data.and_points((cycle, count), gen)

    def of_round(start: int, stop: int):
        rows = torch.arange(start, stop, device=x.device) % cycle
        return (x[rows],), y[rows]
    return engine.Scorer(of_round, METRIC)


def validation(s: Settings, gen: torch.Generator, cycle: int | None = None) -> engine.Scorer:
    """The protocol's validation data: 5000 fresh points per round (each round its own: rounds are
    independent)."""
    return points(EVAL_POINTS, gen, cycle)


def selection(s: Settings, gen: torch.Generator, size: int, cycle: int | None = None) -> engine.Scorer:
    """A fresh selection set: `size` points for each round."""
    return points(size, gen, cycle)


TEST_POINTS = 100_000                        # one large test sample, shared: it measures, it decides nothing
TEST_CHUNK = 4                               # rounds scored on it at once (the networks take its points in blocks)
TEST_COLUMNS = (report.Column("test_error", float, key=False, low=0, high=1),)


def test_set(s: Settings, gen: torch.Generator) -> Callable[[engine.Stack], list[tuple]]:
    """A large test sample and what it measures of each round of a stack: its error rate, as the
    `TEST_COLUMNS` of its rows."""
    x, y = data.and_points((TEST_POINTS,), gen)

    def measure(stack: engine.Stack) -> list[tuple]:
        scored = engine.Scorer(lambda start, stop: ((x,), y), engine.accuracy, shared=True, chunk=TEST_CHUNK)(stack)[0]
        return [(("test_error", 1 - a),) for a in scored.tolist()]
    return measure


def train(s: Settings, gen: torch.Generator, templates: list[torch.nn.Module], bar,
          lr: list[float] | None = None, momentum: list[float] | None = None) -> engine.Stack:
    """`s.rounds` fresh copies of each template, trained as the protocol says, skipped batches included
    (with `lr` or `momentum`, one value per template, each template's copies at their own)."""
    return fit(s, gen, engine.init_stack(templates, s.rounds, gen), bar, lr, momentum)


def fit(s: Settings, gen: torch.Generator, stack: engine.Stack, bar,
        lr: list[float] | None = None, momentum: list[float] | None = None, optimizer=None) -> engine.Stack:
    """Train a given stack in place, as `train` does (`lr`, `momentum`: one value per group of the stack;
    `optimizer`: a factory as `engine.make_optimizer` gives, instead of the settings' optimizer)."""
    optimizer = optimizer or engine.make_optimizer(s.optimizer, stack.per_round(lr or s.lr),
                                                   stack.per_round(momentum or s.momentum))
    size = block_rounds(s.steps)
    blocks = range(0, stack.networks, size)
    for start in blocks:                        # the data of one block of rounds at a time: bounded memory
        rows = range(start, min(start + size, stack.networks))
        part = stack.take(rows)
        batches, lengths = training_data(part.networks, s.steps, gen)

        def batch(step: int):
            (x, z), y = batches(step)
            return training_inputs(stack.groups[0].template, x, z), y
        engine.train(part, batch, s.steps, optimizer, lengths=lengths, rows=slice(start, start + part.networks),
                     on_step=lambda: bar.update(1 / len(blocks)))
        bar.update((s.steps - min(s.steps, int(lengths.max()))) / len(blocks))    # steps every round skipped
        stack.put(part, rows)
    return stack


def model(s: Settings, family: str, width: int) -> torch.nn.Module:
    """A fresh network of the family ("Naive" or "HyperNetwork") as the settings say."""
    return HyperBoolNet() if family == "HyperNetwork" else NaiveBoolNet(width, activation=s.activation, schedule=s.schedule)


def sweep(s: Settings, gen: torch.Generator, scorer: engine.Scorer, families=FAMILIES) -> list[report.Row]:
    """Train and score `s.rounds` models per width of each family; one row per model."""
    rows = []
    with report.bar(len(families) * s.steps, "eval_bool") as bar:
        for family in families:
            stack = train(s, gen, [model(s, family, w) for w in s.sizes()], bar)
            rows += report.rows_of(stack, [(family, w) for w in s.sizes()], scorer(stack))
    return rows


def run(s: Settings, gen: torch.Generator) -> list[report.Row]:
    rows = sweep(s, gen, validation(s, gen))
    net = hardcoded_bool_net().to(gen.device)
    x, y = data.and_points((HARDCODED_EVAL_POINTS,), gen)
    score = report.score_module(net, x, y, METRIC)
    return rows + [report.Row("hardcoded", HYPER_WIDTH, net.final_size, 0, score)]


def arguments() -> cli.Parser:
    return cli.experiment_parser("eval_bool.py", __doc__, PROTOCOL)


def expected(s: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    """The (model, sweep) groups a run with these settings writes: (parameters, rounds) each."""
    groups = {(f, n): (model(s, f, n).final_size, s.rounds) for f in FAMILIES for n in s.sizes()}
    return {**groups, ("hardcoded", HYPER_WIDTH): (hardcoded_bool_net().final_size, 1)}


def jobs(args) -> list[cli.Job]:
    return [cli.single(FIGURE, cli.settings_of(args, PROTOCOL), PROTOCOL, run, expected)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
