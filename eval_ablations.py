"""Check the write-up's discussion at tuned learning rates: other optimizers, smooth surrogates, training length.

For the Naive family of each experiment, each variant below is trained at every learning rate of a grid
(0.001 to 10, about a factor sqrt(10) apart), all in one stack:
  - SGD (the protocol's momentum), Adam, RMSprop (the protocol's momentum), Adagrad;
  - a smooth surrogate of the hard operator: log-sum-exp pooling at T = 0.1 (experiment 1), softplus or
    leaky ReLU (experiment 2); and one annealed linearly to the hard operator at each round's last step
    (LSE from T = 0.5; softplus from temperature 1). Networks are always evaluated with max / ReLU.
Per variant and sweep point, the learning rate with the best mean score of --tuning-rounds rounds on a
selection set of fresh data is chosen; the reported score comes from --rounds other, fresh rounds trained
at that rate and scored on the validation set, which the choice never sees. For reference, at the
protocol's learning rate: plain SGD, and SGD for 4x the steps.
The flags change the base settings of each experiment, and so every variant; the variants set the
optimizer, learning rate and surrogate themselves, so those are not flags here.
Writes ablation_{cnn,bool} (the report at tuned rates) and tuning_{cnn,bool} (the grid) .png/.csv/.json.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

import cli
import data
import engine
import eval_bool
import eval_cnn
import report

EXPERIMENTS = {"cnn": eval_cnn, "bool": eval_bool}
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
LONGER = 4
PROTOCOL_LR = "SGD (protocol lr)"
LONGER_RUN = f"SGD, {LONGER}x steps (protocol lr)"
SELECTION_UNIT = {"cnn": "pairs of sequences", "bool": "points per round"}
FLAGS = ["rounds", "steps", "solved_at", "min_filters", "max_filters", "min_width", "max_width", "tuning_rounds",
         "selection"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tuning:
    """The tuning's own settings, added to an experiment's."""
    tuning_rounds: int = cli.setting("rounds per learning rate and sweep point that choose the learning rate",
                                     cli.positive, "a positive integer")
    selection: int = cli.setting("selection set that scores them: pairs of sequences (cnn, shared) or fresh "
                                 "points per round (bool)", cli.positive, "a positive integer")

    def quick(self):
        return dataclasses.replace(super().quick(), tuning_rounds=min(self.tuning_rounds, 3))

    def memory_bytes(self) -> int:
        """The larger of the grid's stack (len(GRID) x --tuning-rounds rounds per sweep point) and the report's."""
        grid = dataclasses.replace(self, rounds=len(GRID) * self.tuning_rounds)
        return max(super().memory_bytes(), super(Tuning, grid).memory_bytes())


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNTuning(Tuning, eval_cnn.Settings):
    """Experiment 1's settings and the tuning's."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoolTuning(Tuning, eval_bool.Settings):
    """Experiment 2's settings and the tuning's."""


PROTOCOLS = {"cnn": CNNTuning(**dataclasses.asdict(eval_cnn.PROTOCOL), tuning_rounds=100, selection=500),
             "bool": BoolTuning(**dataclasses.asdict(eval_bool.PROTOCOL), tuning_rounds=20, selection=5000)}


def tuned_variants(experiment: str, base: cli.Settings) -> dict[str, cli.Settings]:
    """The variants whose learning rate is tuned, by name (their own lr is not used)."""
    r = dataclasses.replace
    if experiment == "cnn":
        surrogates = {"LSE pool T=0.1": r(base, pool="lse", temperature=0.1),
                      "LSE pool annealed": r(base, pool="lse", temperature=0.5, schedule="linear")}
    else:
        surrogates = {"softplus": r(base, activation="softplus"), "leaky ReLU": r(base, activation="leaky"),
                      "softplus annealed": r(base, activation="softplus", schedule="linear")}
    return {"SGD": base, "Adam": r(base, optimizer="adam"), "RMSprop": r(base, optimizer="rmsprop"),
            "Adagrad": r(base, optimizer="adagrad"), **surrogates}


def references(base: cli.Settings) -> dict[str, cli.Settings]:
    """The untuned references: the protocol's SGD, and the same for 4x the steps."""
    return {PROTOCOL_LR: base, LONGER_RUN: dataclasses.replace(base, steps=LONGER * base.steps)}


def grid_name(variant: str, lr: float) -> str:
    return f"{variant} @ lr={lr:g}"


def parse(model: str) -> tuple[str, float]:
    variant, lr = model.split(" @ lr=")
    return variant, float(lr)


def sweep_of(experiment: str, s: cli.Settings) -> range:
    return s.sizes() if experiment == "cnn" else s.sizes()


class Data:
    """An experiment's data for the study: training, the selection set, the validation set."""

    def __init__(self, experiment: str, s: cli.Settings, gen: torch.Generator) -> None:
        self.experiment, self.gen = experiment, gen
        script = EXPERIMENTS[experiment]
        self.validation = script.validation(s, gen)
        self.selection = script.selection(s, gen, s.selection)

    def score(self, stack: engine.Stack, on: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, on)(stack)


def trained(experiment: str, s: cli.Settings, d: Data, bar, sweep: list[int], lrs: list[float] | None = None
            ) -> engine.Stack:
    """`s.rounds` fresh Naive networks per sweep value, trained in one stack (each value at its own
    learning rate of `lrs`, if given; else at the settings')."""
    script = EXPERIMENTS[experiment]
    return script.train(s, d.gen, [script.model(s, "Naive", n) for n in sweep], bar, lr=lrs)


def choose(scores: dict[float, float]) -> float:
    """The learning rate with the best mean selection score (a tie goes to the smaller rate)."""
    return max(scores, key=lambda lr: (scores[lr], -lr))


def tune(experiment: str, name: str, v: cli.Settings, d: Data, bar) -> tuple[list[report.Row], dict[int, float]]:
    """The grid of one variant scored on the selection set, and the learning rate chosen per sweep value."""
    points = [(n, lr) for lr in GRID for n in sweep_of(experiment, v)]
    stack = trained(experiment, dataclasses.replace(v, rounds=v.tuning_rounds), d, bar, *map(list, zip(*points)))
    rows = report.rows_of(stack, [(grid_name(name, lr), n) for n, lr in points], d.score(stack, "selection"))
    means = {(r.sweep, parse(r.model)[1]): [] for r in rows}
    for r in rows:
        means[(r.sweep, parse(r.model)[1])].append(r.score)
    chosen = {n: choose({lr: float(np.mean(means[(n, lr)])) for lr in GRID}) for n in sweep_of(experiment, v)}
    return rows, chosen


def job(experiment: str, base: cli.Settings) -> cli.Job:
    tuned = {name: v.check() for name, v in tuned_variants(experiment, base).items()}
    refs = {name: v.check() for name, v in references(base).items()}
    record = {"grid": list(GRID), "tuned": {n: dataclasses.asdict(v) for n, v in tuned.items()},
              "references": {n: dataclasses.asdict(v) for n, v in refs.items()}, "chosen_lr": {}}

    def run(gen: torch.Generator) -> dict[str, list[report.Row]]:
        d = Data(experiment, base, gen)
        grid, report_rows = [], []
        steps = len(tuned) * 2 * base.steps + base.steps + LONGER * base.steps
        with report.bar(steps, f"ablations ({experiment})") as bar:
            for name, v in tuned.items():
                rows, chosen = tune(experiment, name, v, d, bar)
                record["chosen_lr"][name] = chosen           # the JSON says which rate each point ran at
                grid += rows
                stack = trained(experiment, v, d, bar, list(chosen), list(chosen.values()))
                report_rows += report.rows_of(stack, [(name, n) for n in chosen], d.score(stack, "validation"))
            for name, v in refs.items():
                stack = trained(experiment, v, d, bar, list(sweep_of(experiment, v)))
                report_rows += report.rows_of(stack, [(name, n) for n in sweep_of(experiment, v)],
                                           d.score(stack, "validation"))
        return {f"tuning_{experiment}": grid, f"ablation_{experiment}": report_rows}
    return cli.Job(figures(experiment, base), base, PROTOCOLS[experiment], run,
                   notes={f"tuning_{experiment}": tuning_notes(experiment), f"ablation_{experiment}": ablation_notes(experiment)},
                   record=record)


def figures(experiment: str, base: cli.Settings) -> tuple[report.Figure, report.Figure]:
    script = EXPERIMENTS[experiment]
    names = tuple(tuned_variants(experiment, base))
    ablation = dataclasses.replace(script.FIGURE, name=f"ablation_{experiment}", models=(*names, *references(base)),
                                   title=f"{script.FIGURE.title}: Naive at tuned learning rates")
    low, high = sweep_of(experiment, base)[0], sweep_of(experiment, base)[-1]
    unit = "filters" if experiment == "cnn" else "width"
    views = tuple(report.View("learning rate", lambda s: parse(s.model)[1], lambda s, n=n: s.sweep == n,
                              f"{unit} {n}, tuning rounds on the selection set", log_x=10,
                              series=lambda s: parse(s.model)[0]) for n in (low, high))
    tuning = dataclasses.replace(script.FIGURE, name=f"tuning_{experiment}", views=views, table=False,
                                 title=script.FIGURE.title, models=tuple(grid_name(v, lr) for v in names for lr in GRID))
    return tuning, ablation


def tuning_notes(experiment: str) -> cli.Notes:
    """The learning rate chosen per variant and sweep point (from the grid's rows, as the run chose),
    marked where it sits at an edge of the grid."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        scores: dict[str, dict[int, dict[float, list[float]]]] = {}
        for r in rows:
            variant, lr = parse(r.model)
            scores.setdefault(variant, {}).setdefault(r.sweep, {}).setdefault(lr, []).append(r.score)
        lines = [f"learning rate chosen on the selection set, per sweep point (* = at an edge of the grid "
                 f"{GRID[0]:g}..{GRID[-1]:g}: the best may lie outside it):"]
        for variant, per_point in scores.items():
            chosen = {n: choose({lr: float(np.mean(s)) for lr, s in by_lr.items()}) for n, by_lr in per_point.items()}
            cells = [f"{n}: {lr:g}{'*' if lr in (GRID[0], GRID[-1]) else ''}" for n, lr in chosen.items()]
            lines.append(f"  {variant:<20} " + ", ".join(cells))
        return "\n".join(lines)
    return notes


SMALL = {"cnn": 1, "bool": 2}          # the smallest network that can solve the task: 1 filter, width 2


def ablation_notes(experiment: str) -> cli.Notes:
    """Each tuned variant at the small network against the protocol's SGD at the same size and at the
    widest network of the sweep, with 95 % bootstrap intervals (unpaired: different rounds)."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        groups: dict[str, dict[int, list[float]]] = {}
        for r in rows:
            groups.setdefault(r.model, {}).setdefault(r.sweep, []).append(r.score)
        if PROTOCOL_LR not in groups:
            return ""
        small = max(min(groups[PROTOCOL_LR]), SMALL[experiment])
        wide = max(groups[PROTOCOL_LR])
        lines = ["differences a - b, 95 % bootstrap (mean; solved share in points):"]
        for name in groups:
            for b, nb in ((PROTOCOL_LR, small), (PROTOCOL_LR, wide)):
                if name == b or small not in groups[name] or nb not in groups[b]:
                    continue
                sa, sb = np.array(groups[name][small]), np.array(groups[b][nb])
                mean = report.difference_ci(sa, sb, paired=False)
                solved = report.difference_ci(sa >= solved_at, sb >= solved_at, paired=False)
                lines.append(f"  {name} {small} - {b} {nb}: mean {mean[0]:+.4f} [{mean[1]:+.4f}, {mean[2]:+.4f}], "
                             f"solved {100 * solved[0]:+.1f} [{100 * solved[1]:+.1f}, {100 * solved[2]:+.1f}]")
        return "\n".join(lines)
    return notes


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS)


def jobs(args) -> list[cli.Job]:
    return [job(e, base) for e, (base, _) in cli.study_settings(args, PROTOCOLS).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
