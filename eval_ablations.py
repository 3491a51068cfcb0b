"""Tuned against tuned: width, optimizers, smooth surrogates and training length, every arm at its own rate.

For the Naive family of each experiment, every arm below gets its own learning rate (and momentum, for
SGD and RMSprop) from the shared grid of tuning.py (lr 0.001..10, momentum 0 / 0.5 / 0.9):
  - each sweep point (the smallest network that solves the task, the widest, points between), the wide
    network as much as the small one;
  - each optimizer: SGD, Adam, RMSprop, Adagrad; each smooth training surrogate of the hard operator the
    experiment declares (its SURROGATES: log-sum-exp pooling, fixed or annealed to max pooling; softplus,
    leaky ReLU, softplus annealed to ReLU); networks are always evaluated with max pooling / ReLU;
  - each training length: --lengths multiples of --steps (default 1x, 4x and 16x), every arm re-tuned at
    each length (--points sweep points at 1x, --long-points at the longer lengths: the sizes are spread
    geometrically from the smallest solving network to the widest).
An arm's grid points train in one stack on --tuning-rounds fresh rounds, each round scored on its own
fresh selection set (--selection); the point with the best --criterion (default: the share of rounds
solved, what the verdicts compare) is chosen; points equal on it and on the mean score first race on 3x
the tuning rounds afresh (tuning.race); ties go to the better mean score, then the smaller learning rate,
then the smaller momentum. The arm is then reported on --rounds other, fresh rounds trained at its
chosen values (all sweep points of an arm in one stack, each at its own rate), each scored on its own
validation set; the choice never sees them. Mean scores are reported at the same choices. Reference: the
protocol's SGD at its own untuned rate and length (the write-up's setting).
Every reported network is also measured on the experiment's large test set (TEST_COLUMNS: its error rate
and, in experiment 1, the start positions at which it misses the pattern).
Writes ablation_{cnn,bool} (reported rounds) and tuning_{cnn,bool} (the grid) .png/.csv/.json.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

import cli
import engine
import eval_bool
import eval_cnn
import report
import search
import tuning

SCRIPTS = (eval_cnn, eval_bool)
OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "RMSprop": "rmsprop", "Adagrad": "adagrad"}
BASELINE = "SGD"                                      # what the other variants are compared with
REFERENCE = "SGD at the protocol's rate"                    # untuned: the write-up's setting
FLAGS = ["rounds", "steps", "solved_at", "min_filters", "max_filters", "min_width", "max_width"]
COLUMNS = (report.Column("lr", float, low=0), report.Column("momentum", float, low=0, high=1),
           report.Column("steps", int, low=1))
TIE_BREAK = (f"points equal on the criterion and the mean score race on {tuning.RACE}x the tuning rounds afresh; "
             "ties: better mean score, then smaller learning rate, then smaller momentum")
SCORING_CHUNK = 256                                   # rounds engine.evaluate scores at once


def multiples(text: str) -> list[int] | None:
    """'1,4,16' -> [1, 4, 16]; None unless distinct increasing positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        return None
    return values if values and values[0] >= 1 and all(a < b for a, b in zip(values, values[1:])) else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Study(cli.StudySettings):
    """The ablation's own settings, beside an experiment's."""
    tuning_rounds: int = cli.setting("fresh rounds per arm and grid point that choose its learning rate and "
                                     "momentum", cli.positive, "a positive integer")
    selection: int = cli.setting("each tuning round's own selection set: pairs of sequences (cnn) or points "
                                 "(bool)", cli.within(1, 100_000), "in [1, 100000]")
    criterion: str = cli.setting("what the grid point is chosen by: the share of tuning rounds solved, or their "
                                 "mean score", choices=tuning.CRITERIA, default="solved")
    lengths: str = cli.setting("training lengths, in multiples of --steps, comma separated, increasing",
                               lambda v: multiples(v) is not None, "distinct increasing positive integers such as 1,4,16",
                               default="1,4,16")
    points: int = cli.setting("at most this many sweep points at 1x --steps, from the smallest network that "
                              "solves the task to the widest, spread geometrically", lambda v: v >= 2, "at least 2")
    long_points: int = cli.setting("the same at every longer length", lambda v: v >= 2, "at least 2", default=2)

    def multiples(self) -> list[int]:
        return multiples(self.lengths)

    def quick(self) -> "Study":
        return dataclasses.replace(self, tuning_rounds=min(self.tuning_rounds, 3),
                                   lengths=",".join(map(str, self.multiples()[:2])))

    def memory_bytes(self, base: cli.Settings) -> int:
        """The largest stack: an SGD arm's grid (len(grid) x --tuning-rounds rounds per sweep point) or the
        reported rounds, at the longest length (training data may grow with it); plus its selection data,
        held for every round at once by some experiments, and a chunk's forward pass on it."""
        grid = len(tuning.grid("sgd"))
        longest = dataclasses.replace(base, steps=self.multiples()[-1] * base.steps)
        training = max(dataclasses.replace(longest, rounds=r).memory_bytes()
                       for r in (grid * self.tuning_rounds, base.rounds))
        rows = grid * self.tuning_rounds * len(base.sizes())
        return training + (rows + 8 * SCORING_CHUNK) * self.selection * unit_bytes(base)


def unit_bytes(base: cli.Settings) -> int:
    """What one selection unit (a pair of sequences, a point) of this experiment takes, drawn once to see."""
    script = next(s for s in SCRIPTS if isinstance(base, s.Settings))
    (inputs, y) = script.selection(base, torch.Generator().manual_seed(0), 1, 1).data(0, 1)
    return sum(t.element_size() * t.numel() for t in (*inputs, y))


PROTOCOLS = {"cnn": dataclasses.replace(eval_cnn.PROTOCOL, rounds=300), "bool": eval_bool.PROTOCOL}
OWN = {"cnn": Study(tuning_rounds=20, selection=1000, points=7),        # selection = validation size:
       "bool": Study(tuning_rounds=10, selection=5000, points=7)}         # "solved" means the same on both
EXPERIMENTS = {s.NAME: s for s in SCRIPTS}


def variants(script: ModuleType, base: cli.Settings) -> dict[str, cli.Settings]:
    """Every variant by name: the optimizers, then the experiment's surrogates (trained with SGD)."""
    r = dataclasses.replace
    return {**{name: r(base, optimizer=o) for name, o in OPTIMIZERS.items()},
            **{name: r(base, **changes) for name, changes in script.SURROGATES.items()}}


def spread(low: int, high: int, count: int) -> list[int]:
    """At most `count` sizes from low to high (both kept), about evenly spaced on a log scale: all of them if
    there are no more than `count`."""
    if high - low + 1 <= count:
        return list(range(low, high + 1))
    return sorted({round(v) for v in np.geomspace(low, high, count)})


def sizes(script: ModuleType, base: cli.Settings, study: Study, multiple: int) -> list[int]:
    """The sweep points an arm runs at this length: from the smallest network that solves the task (or the
    sweep's ends, if that lies outside) to the widest."""
    sweep = base.sizes()
    low = min(max(sweep[0], script.SMALL), sweep[-1])
    return spread(low, sweep[-1], study.points if multiple == 1 else study.long_points)


def keyed(rows: list[report.Row], steps: int) -> list[report.Row]:
    """Rows with the `steps` key column added after tuning's lr and momentum."""
    return [dataclasses.replace(r, extra=(*r.extra, ("steps", steps))) for r in rows]


def keys(choice: tuning.Choice, steps: int) -> tuple:
    return (("lr", choice.lr), ("momentum", choice.momentum), ("steps", steps))


def tune_and_report(script: ModuleType, name: str, s: cli.Settings, at: list[int], study: Study,
                    gen: torch.Generator, bar, test) -> tuple[dict, list[report.Row], list[report.Row]]:
    """One variant at one length: every sweep point's grid in one stack on tuning rounds (choice on selection
    data), then fresh rounds at the chosen values, all points in one stack, each at its own rate, each round
    scored on its own validation set and measured on the test set (`test`: the experiment's `test_set`)."""
    arms = [tuning.Arm(name, n, s, script.model(s, "Naive", n)) for n in at]
    chosen, grid = tuning.tune(script, arms, study.tuning_rounds, study.selection, study.criterion, gen, bar)
    picks = [chosen[(name, n)] for n in at]
    stack = script.train(s, gen, [arm.template for arm in arms], bar,
                         lr=[c.lr for c in picks], momentum=[c.momentum for c in picks])
    scored, measured = script.validation(s, gen, stack.networks)(stack), test(stack)
    rows = [row for n, c, g in zip(at, picks, stack.groups)
            for row in report.rows_of(stack, [(name, n)], scored, keys(c, s.steps), measured, groups=[g])]
    return {n: dataclasses.asdict(c) for n, c in zip(at, picks)}, keyed(grid, s.steps), rows


def reference(script: ModuleType, base: cli.Settings, at: list[int], gen: torch.Generator, bar, test
              ) -> list[report.Row]:
    """The protocol's SGD at its own rate and length, untuned."""
    stack = script.train(base, gen, [script.model(base, "Naive", n) for n in at], bar)
    fixed = tuning.Choice(base.lr, base.momentum, float("nan"), False)
    return report.rows_of(stack, [(REFERENCE, n) for n in at], script.validation(base, gen, stack.networks)(stack),
                          keys(fixed, base.steps), test(stack))


def job(script: ModuleType, base: cli.Settings, study: Study) -> cli.Job:
    tuned = {name: v.check() for name, v in variants(script, base).items()}
    lengths = study.multiples()
    record = {"variants": {n: dataclasses.asdict(v) for n, v in tuned.items()}, "lr_grid": list(tuning.LR_GRID),
              "momentum_grid": list(tuning.MOMENTUM_GRID), "momentum_for": list(tuning.WITH_MOMENTUM),
              "tie_break": TIE_BREAK, "sizes": {m * base.steps: sizes(script, base, study, m) for m in lengths},
              "chosen": {}}

    def run(gen: torch.Generator) -> dict[str, list[report.Row]]:
        grid, reported, test = [], [], script.test_set(base, gen)
        with report.bar((2 * len(tuned) * sum(lengths) + 1) * base.steps, f"ablations ({script.NAME})") as bar:
            for m in lengths:
                for name, v in tuned.items():
                    s = dataclasses.replace(v, steps=m * base.steps)
                    chosen, g, r = tune_and_report(script, name, s, sizes(script, base, study, m), study, gen, bar, test)
                    record["chosen"].setdefault(s.steps, {})[name] = chosen      # the JSON says what each arm ran at
                    grid, reported = grid + g, reported + r
            reported += reference(script, base, sizes(script, base, study, 1), gen, bar, test)
        return {f"tuning_{script.NAME}": grid, f"ablation_{script.NAME}": reported}
    return cli.Job(figures(script, base, study), base, PROTOCOLS[script.NAME], run,
                   notes={f"tuning_{script.NAME}": tuning_notes(study), f"ablation_{script.NAME}": verdicts(script, base, study)},
                   study=study, study_protocol=OWN[script.NAME], record=record)


# ----------------------------------------------------------------------------- reading the rows back

def key(summary: report.Summary, name: str):
    return summary.keys[[c.name for c in COLUMNS].index(name)]


def grid_scores(rows: list[report.Row]) -> dict[tuple, dict[tuple, np.ndarray]]:
    """Every arm's grid, from its rows: {(model, sweep, steps): {(lr, momentum): tuning rounds' scores}}."""
    tables: dict[tuple, dict[tuple, list[float]]] = {}
    for r in rows:
        tables.setdefault((r.model, r.sweep, r.get("steps")), {}).setdefault((r.get("lr"), r.get("momentum")), []).append(r.score)
    return {arm: {p: np.array(v, dtype=np.float32) for p, v in t.items()} for arm, t in tables.items()}


def choices(rows: list[report.Row], criterion: str, solved_at: float) -> dict[tuple, tuning.Choice]:
    """Every arm's choice as the run made it, from its grid rows: {(model, sweep, steps): Choice}."""
    return {arm: tuning.decide(t, criterion, solved_at) for arm, t in grid_scores(rows).items()}


def cell(c: tuning.Choice, momentum: bool) -> str:
    return f"{c.lr:g}{f'/{c.momentum:g}' if momentum else ''}{'*' if c.edge else ''}"


def tuning_notes(study: Study) -> cli.Notes:
    """Each arm's chosen values (from the grid's rows, as the run chose), grid edges marked, and how many
    grid rounds diverged, by variant and learning rate."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        grids, momenta = grid_scores(rows), with_momentum(rows)
        chosen = {arm: tuning.decide(t, study.criterion, solved_at) for arm, t in grids.items()}
        firm = {arm: tuning.firmness(t, study.criterion, solved_at) for arm, t in grids.items()}
        lines = [f"chosen on {study.tuning_rounds} tuning rounds per grid point and arm, each on its own selection set "
                 f"of {study.selection}, by the {study.criterion} criterion ({TIE_BREAK}); lr/momentum, "
                 f"* = at an edge of the grid {tuning.LR_GRID[0]:g}..{tuning.LR_GRID[-1]:g}; ({tuning.FIRMNESS}):"]
        for steps in dict.fromkeys(s for _, _, s in chosen):
            lines.append(f" {steps} steps:")
            for model in dict.fromkeys(m for m, _, s in chosen if s == steps):
                cells = [f"{n}: {cell(c, model in momenta)} ({tuning.firmness_text(firm[(m, n, s)], study.criterion)})"
                         for (m, n, s), c in chosen.items() if (m, s) == (model, steps)]
                lines.append(f"  {model:<20} " + ", ".join(cells))
        lines.append("diverged grid rounds (non-finite parameters or logits, scored as wrong answers; the tuning rounds, "
                     "not the races'), by learning rate:")
        for steps in dict.fromkeys(r.get("steps") for r in rows):
            for model in dict.fromkeys(r.model for r in rows):
                at = [r for r in rows if (r.model, r.get("steps")) == (model, steps) and r.round < study.tuning_rounds]
                by_lr = {lr: sum(r.diverged for r in at if r.get("lr") == lr) for lr in dict.fromkeys(r.get("lr") for r in at)}
                spelled = ", ".join(f"lr {lr:g}: {k}" for lr, k in by_lr.items() if k) or "none"
                lines.append(f"  {steps} steps, {model:<20} {sum(by_lr.values())} of {len(at)} ({spelled})")
        return "\n".join(lines)
    return notes


def budget(script: ModuleType, base: cli.Settings, size: int, steps: int) -> tuple[int, int, int]:
    """What one reported network of a sweep point spends: its trained parameters, the multiply-adds of its
    training (forward and backward, search.py's convention: the same for every optimizer and surrogate) and
    the training examples it sees. Its tuning costs every arm the same (one grid, the same tuning rounds)."""
    net = script.model(base, "Naive", size)
    (x, *_), _ = script.selection(base, torch.Generator().manual_seed(0), 1, 1).data(0, 1)
    step = search.gradient_step_macs(search.forward_macs(net.eval(), x[0][:1].cpu()), script.BATCH)
    return net.trained_params, steps * step, steps * script.BATCH


def difference(label: str, a: np.ndarray, b: np.ndarray, solved_at: float,
               budgets: tuple[tuple[int, int, int], tuple[int, int, int]]) -> str:
    """One verdict line: a - b (different rounds: unpaired), flagged when the solved-share interval holds 0,
    with the budget of a over that of b."""
    _, low, high = report.difference_ci(a >= solved_at, b >= solved_at, paired=False)
    ratio = [u / v for u, v in zip(*budgets)]
    return (f"  {label}: {report.compare(a, b, False, solved_at)}{'  (interval includes 0)' if low <= 0 <= high else ''}"
            f"; budget a/b: trained parameters {ratio[0]:.2f}x, compute {ratio[1]:.2f}x, data {ratio[2]:.2f}x")


def verdicts(script: ModuleType, base: cli.Settings, study: Study) -> cli.Notes:
    """Tuned against tuned, at every length: the widest minus the smallest network of every variant; every
    variant minus tuned SGD at the smallest network; every length minus 1x at the smallest; and, at 1x,
    tuned SGD against the protocol's untuned SGD."""
    def notes(rows: list[report.Row], solved_at: float) -> str:
        scores = report.by_model(rows, series=lambda r: (r.model, r.get("steps")))
        cost = lambda size, steps: budget(script, base, size, steps)
        tuned = list(dict.fromkeys(r.model for r in rows if r.model != REFERENCE))
        lengths = sorted({r.get("steps") for r in rows if r.model != REFERENCE})
        lines = [f"differences a - b, 95 % bootstrap over rounds (unpaired); every arm at its own rate chosen by the "
                 f"{study.criterion} criterion (means at those rates too):"]
        for steps in lengths:
            lines.append(f" {steps} steps ({steps / base.steps:g}x the protocol's):")
            at = {v: scores[(v, steps)] for v in tuned if (v, steps) in scores}
            for v, by_size in at.items():
                small, wide = min(by_size), max(by_size)
                if small != wide:
                    lines.append(difference(f"{v} {wide} - {v} {small}", by_size[wide], by_size[small], solved_at,
                                            (cost(wide, steps), cost(small, steps))))
            for v, by_size in at.items():
                small = min(by_size)
                if v != BASELINE and BASELINE in at and small in at[BASELINE]:
                    lines.append(difference(f"{v} {small} - {BASELINE} {small}", by_size[small], at[BASELINE][small],
                                            solved_at, (cost(small, steps),) * 2))
            for v, by_size in at.items():
                first, small = scores.get((v, lengths[0]), {}), min(by_size)
                if steps != lengths[0] and small in first:
                    lines.append(difference(f"{v} {small} at {steps} - at {lengths[0]} steps", by_size[small],
                                            first[small], solved_at, (cost(small, steps), cost(small, lengths[0]))))
        protocol = scores.get((REFERENCE, base.steps), {})
        sgd = scores.get((BASELINE, base.steps), {})
        if protocol and sgd:
            small, wide = min(protocol), max(protocol)
            lines.append(f" the protocol's untuned SGD ({base.steps} steps, lr {base.lr:g}, momentum {base.momentum:g}):")
            at = base.steps
            lines.append(difference(f"{REFERENCE} {wide} - {REFERENCE} {small}", protocol[wide], protocol[small], solved_at,
                                    (cost(wide, at), cost(small, at))))
            for n, m in ((small, small), (small, wide), (wide, wide)):
                if n in sgd:
                    lines.append(difference(f"tuned {BASELINE} {n} - {REFERENCE} {m}", sgd[n], protocol[m], solved_at,
                                            (cost(n, at), cost(m, at))))
        return "\n".join(lines)
    return notes


# ----------------------------------------------------------------------------- figures

def figures(script: ModuleType, base: cli.Settings, study: Study) -> tuple[report.Figure, report.Figure]:
    names = (*variants(script, base), REFERENCE)
    steps = [m * base.steps for m in study.multiples()]
    views = tuple(report.View(f"{script.SIZE}", lambda s: s.sweep, lambda s, n=n: key(s, "steps") == n,
                              f"{n} steps ({n // base.steps}x)") for n in steps)
    ablation = dataclasses.replace(script.FIGURE, name=f"ablation_{script.NAME}", models=names,
                                   columns=(*COLUMNS, *script.TEST_COLUMNS),
                                   views=views, title=f"{script.FIGURE.title}: Naive, each arm at its tuned rate")
    grid = dataclasses.replace(script.FIGURE, name=f"tuning_{script.NAME}", models=names, columns=COLUMNS, table=False,
                               render=chosen_figure(script, study), title=script.FIGURE.title)
    return grid, ablation


def chosen_figure(script: ModuleType, study: Study):
    """Per length: each arm's chosen lr / momentum (colour: log10 lr; * at a grid edge; the criterion's
    value on the tuning rounds below), and the share of grid rounds that diverged, by variant and lr."""
    def render(summaries: list[report.Summary], rows: list[report.Row], solved_at: float):
        chosen, momenta = choices(rows, study.criterion, solved_at), with_momentum(rows)
        lengths = list(dict.fromkeys(s for _, _, s in chosen))
        models = list(dict.fromkeys(m for m, _, _ in chosen))
        fig, axes = report.canvas(len(lengths), 2, (15, 0.5 * len(models) * len(lengths) + 2.5 * len(lengths)),
                                  left=1.7, wgap=1.7, bottom=0.6, top=0.6)   # room for the names, two-line titles
        for steps, (left, right) in zip(lengths, axes):
            at = sorted({n for _, n, s in chosen if s == steps})
            image = np.full((len(models), len(at)), np.nan)
            for (m, n, s), c in chosen.items():
                if s == steps:
                    image[models.index(m), at.index(n)] = np.log10(c.lr)
                    value = f"{100 * c.value:.0f}%" if study.criterion == "solved" else f"{c.value:.3f}"
                    left.text(at.index(n), models.index(m), f"{cell(c, m in momenta)}\n{value}",
                              ha="center", va="center", fontsize=7)
            left.imshow(image, cmap="viridis", alpha=0.5, aspect="auto", vmin=np.log10(tuning.LR_GRID[0]),
                        vmax=np.log10(tuning.LR_GRID[-1]))
            left.set(xticks=range(len(at)), xticklabels=at, yticks=range(len(models)), yticklabels=models,
                     xlabel=script.SIZE, title=f"{steps} steps: chosen lr[/momentum] (* grid edge), {study.criterion} "
                                               f"on {study.tuning_rounds} tuning rounds\n"
                                               f"({(1 + tuning.RACE) * study.tuning_rounds} where tied points raced)")
            counts: dict[tuple, list[bool]] = {}
            for r in rows:
                if r.get("steps") == steps and r.round < study.tuning_rounds:      # the races' rounds aside
                    counts.setdefault((r.model, r.get("lr")), []).append(r.diverged)
            diverged = np.array([[np.mean(counts.get((m, lr), [np.nan])) for lr in tuning.LR_GRID] for m in models])
            right.imshow(diverged, cmap="Reds", vmin=0, vmax=1, aspect="auto")
            for (i, j), v in np.ndenumerate(diverged):
                if v > 0:
                    right.text(j, i, f"{100 * v:.0f}%", ha="center", va="center", fontsize=7)
            right.set(xticks=range(len(tuning.LR_GRID)), xticklabels=[f"{lr:g}" for lr in tuning.LR_GRID],
                      yticks=range(len(models)), yticklabels=models, xlabel="learning rate",
                      title=f"{steps} steps: share of grid rounds diverged")
        return report.png(fig)
    return render


def with_momentum(rows: list[report.Row]) -> set[str]:
    """The variants whose grid has more than one momentum."""
    seen: dict[str, set] = {}
    for r in rows:
        seen.setdefault(r.model, set()).add(r.get("momentum"))
    return {m for m, v in seen.items() if len(v) > 1}


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS, OWN)


def jobs(args) -> list[cli.Job]:
    return [job(EXPERIMENTS[e], base, study) for e, (base, study) in cli.study_settings(args, PROTOCOLS, OWN).items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
