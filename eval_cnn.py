"""Experiment 1: is the pattern 1101 somewhere in a sequence of 64 random floats?

Naive CNNs (all weights learn) and RandomConv CNNs (frozen random filters) with 1..7 filters, and a
HyperNetwork that generates a 5-parameter network, each trained 500 times with SGD, scored by
validation accuracy on 1000 negative/positive pairs; the hard-coded kernel [1, 1, 0, 1] for scale.
--pattern and --seq-len pose the same task with another pattern (the filters are as long as it).
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
from hypernet import HyperCNN, training_inputs
from models import POOLS, NaiveCNN, hardcoded_cnn

# ----------------------------------------------------------------------------- what a study needs of it
NAME = "cnn"
FAMILIES = ("Naive", "RandomConv", "HyperNetwork")
VALIDATION_PAIRS = 1000
OWN_CHUNK = 32                              # rounds scored at once on sets of their own: bounded memory
METRIC = engine.accuracy
SMALL = 1                                   # the smallest network that solves the task: one filter
SIZE = "filters"                            # what the sweep value counts
SELECTION_UNIT = "pairs of sequences"       # what a selection-set size counts
BATCH = 2                                   # examples (sequences) per training step: one pair
SURROGATES = {                              # smooth stand-ins for max pooling while training (settings changes)
    "LSE pool": dict(pool="lse", temperature=0.1),                        # log-sum-exp at a fixed temperature
    "LSE pool annealed": dict(pool="lse", temperature=0.5, schedule="linear"),   # to max pooling at the last step
}

FIGURE = report.Figure(
    name="cnn_experiment", title="[1, 1, 0, 1] in sequence", ylabel="validation accuracy (%)",
    solved_label="accuracy >= {solved_at:.1%} on a validation set of its own",
    views=(report.View("trainable parameters", lambda s: s.params),), percent=True,
    columns=(report.Column("own_score", float, key=False, low=0, high=1),), solved_from="own_score")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(cli.Settings):
    min_filters: int = cli.setting("smallest filter count of the sweep", cli.positive, "at least 1", default=1)
    max_filters: int = cli.setting("largest filter count of the sweep", cli.positive, "at least 1", default=7)
    pool: str = cli.setting("pooling while training (evaluation always uses max)", choices=POOLS, default="max")
    temperature: float = cli.setting("temperature of --pool lse", cli.within(1e-4, 1e4), "in [1e-4, 1e4]", default=0.1)
    pattern: str = cli.setting("the pattern: 1 is a position set to 1.0 in a positive sequence, 0 keeps its noise",
                               default=data.PROTOCOL_PATTERN.text)
    seq_len: int = cli.setting("length of the sequences", cli.within(1, 4096), "in [1, 4096]",
                               default=data.PROTOCOL_PATTERN.seq_len)

    def sizes(self) -> range:
        """The sweep: filter counts."""
        return cli.sweep_range(self.min_filters, self.max_filters, "min_filters", "max_filters")

    def task(self) -> data.Pattern:
        try:
            return data.Pattern(self.pattern, self.seq_len)
        except ValueError as e:
            raise cli.UsageError(f"--pattern: {e}") from None

    def check(self) -> "Settings":
        super().check()
        self.sizes()
        self.task()
        return self

    def quick(self) -> "Settings":
        return dataclasses.replace(super().quick(), max_filters=min(self.max_filters, self.min_filters + 2))

    def memory_bytes(self) -> int:
        """Naive and RandomConv train in one stack: a few (rounds, 2, filters, positions) float tensors."""
        return 2 * self.rounds * len(self.sizes()) * 2 * self.max_filters * self.seq_len * 4 * 4


PROTOCOL = Settings(rounds=500, steps=100, lr=0.1, momentum=0.5, solved_at=1.0)


def model(s: Settings, family: str, filters: int) -> torch.nn.Module:
    """A fresh network of the family ("Naive", "RandomConv" or "HyperNetwork") as the settings say."""
    if family == "HyperNetwork":
        return HyperCNN(len(s.pattern))
    return NaiveCNN(filters, frozen_conv=family == "RandomConv", pool=s.pool, temperature=s.temperature,
                    schedule=s.schedule, kernel_size=len(s.pattern))


def train(s: Settings, gen: torch.Generator, templates: list[torch.nn.Module], bar,
          lr: list[float] | None = None, momentum: list[float] | None = None) -> engine.Stack:
    """`s.rounds` fresh copies of each template, trained as the protocol says on fresh pairs (with `lr`
    or `momentum`, one value per template, each template's copies at their own)."""
    return fit(s, gen, engine.init_stack(templates, s.rounds, gen), bar, lr, momentum)


def fit(s: Settings, gen: torch.Generator, stack: engine.Stack, bar,
        lr: list[float] | None = None, momentum: list[float] | None = None, optimizer=None) -> engine.Stack:
    """Train a given stack in place, as `train` does (`lr`, `momentum`: one value per group of the stack;
    `optimizer`: a factory as `engine.make_optimizer` gives, instead of the settings' optimizer)."""
    task = s.task()

    def batch(step: int):
        x, y = data.pattern_pairs((stack.networks,), gen, task)
        z = data.latents((stack.networks,), gen)          # drawn for every stack: one random stream for all
        return training_inputs(stack.groups[0].template, x, z), y
    optimizer = optimizer or engine.make_optimizer(s.optimizer, stack.per_round(lr or s.lr),
                                                   stack.per_round(momentum or s.momentum))
    engine.train(stack, batch, s.steps, optimizer, on_step=bar.update)
    return stack


def shared_set(x: torch.Tensor, y: torch.Tensor) -> engine.Scorer:
    """The same sequences for every round (hypernetworks at z = 0), scored by accuracy."""
    return engine.Scorer(lambda start, stop: ((x,), y), METRIC, shared=True)


def own_sets(s: Settings, gen: torch.Generator, pairs: int, cycle: int) -> engine.Scorer:
    """Every round scored on its own fresh set of `pairs` negative/positive pairs, so that rounds are
    independent and intervals over rounds hold (a set shared by all rounds moves them all together);
    row i of a stack is round i % `cycle`'s (`data.per_round_validation`)."""
    return engine.Scorer(data.per_round_validation(cycle, pairs, gen, s.task()), METRIC, chunk=OWN_CHUNK)


def validation(s: Settings, gen: torch.Generator, cycle: int) -> engine.Scorer:
    """What studies score on: each of `cycle` rounds its own set of the protocol's size (1000 pairs)."""
    return own_sets(s, gen, VALIDATION_PAIRS, cycle)


def selection(s: Settings, gen: torch.Generator, size: int, cycle: int) -> engine.Scorer:
    """A fresh selection set for each of `cycle` rounds: `size` negative/positive pairs."""
    return own_sets(s, gen, size, cycle)


TEST_PER_START = 50                          # test set: this many positives at every start, as many negatives
TEST_COLUMNS = (report.Column("test_error", float, key=False, low=0, high=1),
                report.Column("missed_starts", str, key=False))


def test_set(s: Settings, gen: torch.Generator) -> Callable[[engine.Stack], list[tuple]]:
    """A large stratified test set (positives at every start equally often) and what it measures of each
    round of a stack: its error rate and the start positions at which it misses a positive (`0;1`, or
    empty), as the `TEST_COLUMNS` of its rows."""
    task = s.task()
    x, y, start = data.stratified_test_set(TEST_PER_START, gen, task)

    def measure(stack: engine.Stack) -> list[tuple]:
        rows = []
        for group in stack.groups:
            logits = engine.logits(stack, group, (x,), shared=True)
            missed, false_pos = data.misses_by_start(logits, start, task.last_start + 1)
            errors = (missed.sum(1) + false_pos).float() / len(y)
            rows += [(("test_error", e), ("missed_starts", ";".join(str(i) for i in m.nonzero()[:, 0].tolist())))
                     for e, m in zip(errors.tolist(), missed)]
        return rows
    return measure


def stacks_of(s: Settings, families) -> list[list[tuple[str, int]]]:
    """The (family, filters) labels of each stack of a sweep: Naive and RandomConv share one."""
    convs = [f for f in families if f != "HyperNetwork"]
    return [[(f, n) for f in group for n in s.sizes()] for group in (convs, ["HyperNetwork"]) if set(group) & set(families)]


def trained(s: Settings, gen: torch.Generator, families, bar):
    """Each stack of the sweep once trained, with its labels."""
    for labels in stacks_of(s, families):
        yield labels, train(s, gen, [model(s, f, n) for f, n in labels], bar)


def sweep(s: Settings, gen: torch.Generator, scorer: engine.Scorer, families=FAMILIES) -> list[report.Row]:
    """Train and score `s.rounds` models per filter count of each family; one row per model."""
    with report.bar(len(stacks_of(s, families)) * s.steps, "eval_cnn") as bar:
        return [row for labels, stack in trained(s, gen, families, bar)
                for row in report.rows_of(stack, labels, scorer(stack))]


def run(s: Settings, gen: torch.Generator) -> list[report.Row]:
    """The faithful run: every network scored on the protocol's one validation set (the write-up's figure),
    and, after all training, each round on a set of its own of the same size (`own_score`: independent
    rounds, so the solved share's interval holds; round r of every size of a stack meets the same set,
    so differences between sizes are paired by round)."""
    x_val, y_val = data.pattern_validation_set(VALIDATION_PAIRS, gen, s.task())
    shared = shared_set(x_val, y_val)
    with report.bar(2 * s.steps, "eval_cnn") as bar:
        stacks = list(trained(s, gen, FAMILIES, bar))
        scored = [shared(stack) for _, stack in stacks]
    net = hardcoded_cnn(s.task()).to(gen.device)
    fixed = report.score_module(net, x_val, y_val, METRIC)
    rows = []
    for (labels, stack), on_shared in zip(stacks, scored):           # own sets drawn last: the protocol's
        own = validation(s, gen, s.rounds)(stack)[0].tolist()         # draws stay as they were
        rows += report.rows_of(stack, labels, on_shared, measured=[(("own_score", v),) for v in own])
    x_own, y_own = data.pattern_validation_set(VALIDATION_PAIRS, gen, s.task())
    own = report.score_module(net, x_own, y_own, METRIC)
    return rows + [report.Row("hardcoded", 1, net.final_size, 0, fixed, extra=(("own_score", own),))]


def arguments() -> cli.Parser:
    return cli.experiment_parser("eval_cnn.py", __doc__, PROTOCOL)


def expected(s: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    """The (model, sweep) groups a run with these settings writes: (parameters, rounds) each."""
    groups = {(f, n): (model(s, f, n).final_size, s.rounds) for f in FAMILIES for n in s.sizes()}
    return {**groups, ("hardcoded", 1): (hardcoded_cnn(s.task()).final_size, 1)}


def jobs(args) -> list[cli.Job]:
    return [cli.single(FIGURE, cli.settings_of(args, PROTOCOL), PROTOCOL, run, expected)]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
