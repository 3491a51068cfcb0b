"""Why does width help? Winning tickets and exploration at initialization, on the faithful protocol.

Two published explanations make testable predictions on these networks:
  - winning tickets (Frankle & Carbin, ICLR 2019): a wide network succeeds because it holds a small
    sub-network whose initial weights train well; rewound to those weights and trained alone, it succeeds;
  - exploration at initialization (Brutzkus & Globerson, ICML 2019): in a max-pooling CNN detecting a
    pattern, some filters are already aligned with it at init, and training concentrates on them.
Experiment 1, for every trained Naive(n) of the faithful sweep: each filter alone (max pooling and a
threshold fitted on a selection set) -- which networks hold a filter that solves alone; the best filter
(chosen on the selection set) rewound to its initial weights with its decision weight and bias and
trained alone on fresh batches, against a random filter of the same network rewound alike (the control of
the original paper) and against the wide network; the solved share against the best initial cosine of a
network's filters with the pattern's kernel; and an init-only search: of n fresh Naive(1), keep the one
best on the selection set before any training (its filter alone, threshold fitted), and train only it,
against one Naive(n) and the best of n trained Naive(1) chosen after training.
Experiment 2, for every trained Naive(w), w >= 3: the width-2 sub-network it relies on most (the two hidden
units of largest |output weight| x |input weights|, the size of their effect on the output), alone with
the output bias; rewound and trained alone as a width-2 network, against a random pair rewound alike.
Both: the share of rounds scoring at least t for every t (a performance profile). Every choice that looks
at data uses the selection set, never the validation set.
Writes mechanism_cnn and mechanism_bool (.png, .csv, .json).
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import cli
import data
import engine
import eval_bool
import eval_cnn
import report
from models import NaiveBoolNet, NaiveCNN, pool_conv

FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "min_width",
         "max_width", "selection"]
WIDE, ALONE, HOLDS, DETECTORS = "wide network", "best unit alone", "holds a unit that solves alone", "detector share"
TICKET, CONTROL, FRESH = "ticket: best unit rewound, retrained", "control: random unit rewound, retrained", "fresh small"
INIT_CHOICE, RESTARTS, ALIGN = "init-only choice of n Naive(1)", "best of n trained Naive(1)", "best initial cosine"
MODELS = {"cnn": (WIDE, ALONE, HOLDS, DETECTORS, TICKET, CONTROL, FRESH, INIT_CHOICE, RESTARTS, ALIGN),
          "bool": (WIDE, ALONE, HOLDS, TICKET, CONTROL, FRESH)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNAnatomy(eval_cnn.Settings):
    """Experiment 1's settings and the selection set that fits each filter's threshold and makes every choice
    (experiment 2's choices look at weights only)."""
    selection: int = cli.setting("selection set: pairs of sequences (cnn)", cli.positive, "a positive integer",
                                 default=1000)


PROTOCOLS = {"cnn": CNNAnatomy(**dataclasses.asdict(eval_cnn.PROTOCOL)), "bool": eval_bool.PROTOCOL}


# ----------------------------------------------------------------------------- thresholds fitted on data

def fit_thresholds(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per row of values (P, B) scored against labels (B,) or (P, B): the threshold and direction (+1:
    positive above it, -1: below) of best accuracy; ties go to the first in sorted order."""
    labels = labels.expand_as(values)
    order = values.argsort(-1)
    sorted_values, sorted_labels = values.gather(-1, order), labels.gather(-1, order).float()
    zero = torch.zeros_like(sorted_labels[:, :1])
    negatives_below = torch.cat([zero, (1 - sorted_labels).cumsum(-1)], -1)            # (P, B + 1)
    positives_above = sorted_labels.sum(-1, keepdim=True) - torch.cat([zero, sorted_labels.cumsum(-1)], -1)
    above = negatives_below + positives_above                       # correct when positive means above
    below = values.shape[-1] - above
    best_above, at_above = above.max(-1)
    best_below, at_below = below.max(-1)
    direction = torch.where(best_above >= best_below, 1.0, -1.0)
    at = torch.where(direction > 0, at_above, at_below)
    inf = torch.full_like(sorted_values[:, :1], float("inf"))
    edges = torch.cat([-inf, sorted_values, inf], -1)
    threshold = (edges.gather(-1, at[:, None])[:, 0] + edges.gather(-1, at[:, None] + 1)[:, 0]) / 2
    return torch.nan_to_num(threshold, nan=0.0), direction          # (-inf + x) / 2 stays -inf; inf - inf: none


def accuracy_of(values: Tensor, labels: Tensor, threshold: Tensor, direction: Tensor) -> Tensor:
    """Accuracy of `direction * (value - threshold) > 0` per row of values (P, B)."""
    return ((direction[:, None] * (values - threshold[:, None]) > 0).float() == labels).float().mean(-1)


def filters_alone(w: Tensor, x_sel: Tensor, y_sel: Tensor, x_val: Tensor, y_val: Tensor) -> tuple[Tensor, Tensor]:
    """Each filter of w (R, F, K) alone, max-pooled, with a threshold fitted on the selection set:
    its selection and validation accuracies, both (R, F)."""
    with torch.no_grad():
        pooled = [pool_conv(x.squeeze(-2), w).permute(0, 2, 1).flatten(0, 1) for x in (x_sel, x_val)]   # (R*F, B)
    threshold, direction = fit_thresholds(pooled[0], y_sel)
    return tuple(accuracy_of(p, y, threshold, direction).view(w.shape[0], w.shape[1])
                 for p, y in zip(pooled, (y_sel, y_val)))


def cosine(w: Tensor, kernel: Tensor) -> Tensor:
    """Cosine of each filter of w (R, F, K) with the kernel (K,) -> (R, F)."""
    return torch.nn.functional.cosine_similarity(w, kernel.expand_as(w), dim=-1)


# ----------------------------------------------------------------------------- experiment 1

def rows_of(model: str, sweep: int, params: int, scores: Tensor) -> list[report.Row]:
    return [report.Row(model, sweep, params, r, float(min(max(v, 0.0), 1.0))) for r, v in enumerate(scores.tolist())]


def run_cnn(s: CNNAnatomy, gen: torch.Generator) -> list[report.Row]:
    task = s.task()
    x_val, y_val = data.pattern_validation_set(eval_cnn.VALIDATION_PAIRS, gen, task)
    x_sel, y_sel = data.pattern_validation_set(s.selection, gen, task)
    kernel = torch.tensor(task.kernel, device=gen.device)
    val = eval_cnn.shared_set(x_val, y_val)
    score = lambda stack: val(stack)[0]
    counts = list(s.sizes())
    top = max(counts)
    rows = []
    with report.bar(4 * s.steps, "mechanism (cnn)") as bar:
        wide = engine.init_stack([eval_cnn.model(s, "Naive", n) for n in counts], s.rounds, gen)
        start = {k: v.clone() for k, v in wide.params.items()}
        eval_cnn.fit(s, gen, wide, bar)
        wide_scores = score(wide)
        picks, randoms = [], []
        for g, n in zip(wide.groups, counts):
            own = wide.group_params(g)
            sel, valid = filters_alone(own["conv.weight"].flatten(1, 2), x_sel, y_sel, x_val, y_val)
            detectors = (valid >= s.solved_at).float().sum(1)
            rows += rows_of(WIDE, n, 5 * n + 1, wide_scores[g.start:g.stop])
            rows += rows_of(ALONE, n, 5, valid.gather(1, sel.argmax(1, keepdim=True))[:, 0])
            rows += rows_of(HOLDS, n, 5 * n + 1, (detectors > 0).float())
            rows += rows_of(DETECTORS, n, 5 * n + 1, detectors / n)
            first = start["conv.weight"][g.start:g.stop, :n, 0]                          # (R, n, K) at init
            rows += rows_of(ALIGN, n, 5 * n + 1, (cosine(first, kernel).max(1).values + 1) / 2)
            picks.append(sel.argmax(1))                                                  # chosen on the selection set
            randoms.append(torch.randint(0, n, (g.stop - g.start,), generator=gen, device=gen.device))
        for name, chosen in ((TICKET, picks), (CONTROL, randoms)):
            stack = engine.trainable_stack(NaiveCNN(1, kernel_size=len(s.pattern)), rewound_filters(start, wide, chosen))
            eval_cnn.fit(s, gen, stack, bar)
            scores = score(stack)
            for i, n in enumerate(counts):
                rows += rows_of(name, n, 6, scores[i * s.rounds:(i + 1) * s.rounds])
        rows += rows_of(FRESH, 1, 6, wide_scores[:s.rounds]) if counts[0] == 1 else []
        rows += init_search(s, gen, top, x_sel, y_sel, val, bar)
    return rows


def rewound_filters(start: dict[str, Tensor], wide: engine.Stack, chosen: list[Tensor]) -> dict[str, Tensor]:
    """For each group's rounds, the chosen filter at its initial weights, with its initial decision weight
    and the initial bias: the parameters of Naive(1) networks, stacked group after group."""
    out = {"conv.weight": [], "decision.weight": [], "decision.bias": []}
    for g, pick in zip(wide.groups, chosen):
        rows = torch.arange(g.start, g.stop, device=pick.device)
        out["conv.weight"].append(start["conv.weight"][rows, pick][:, None])
        out["decision.weight"].append(start["decision.weight"][rows, 0, pick][:, None, None])
        out["decision.bias"].append(start["decision.bias"][rows])
    return {k: torch.cat(v) for k, v in out.items()}


def init_search(s: CNNAnatomy, gen: torch.Generator, top: int, x_sel, y_sel, val, bar) -> list[report.Row]:
    """`top` fresh Naive(1) per round: the best of the first n chosen before training (its filter alone
    on the selection set, threshold fitted) and the best of the first n chosen after training (its
    selection accuracy), each scored on the validation set once trained."""
    pool = engine.init_stack([NaiveCNN(1, kernel_size=len(s.pattern))] * top, s.rounds, gen)
    with torch.no_grad():
        w = pool.params["conv.weight"].view(top, s.rounds, -1).transpose(0, 1)           # (R, C, K)
        pooled = pool_conv(x_sel.squeeze(-2), w).permute(0, 2, 1).flatten(0, 1)          # (R*C, B)
        threshold, direction = fit_thresholds(pooled, y_sel)
        before = accuracy_of(pooled, y_sel, threshold, direction).view(s.rounds, top)    # chosen on this alone
    eval_cnn.fit(s, gen, pool, bar)
    by_round = lambda t: t.view(top, s.rounds).t()
    after = by_round(eval_cnn.shared_set(x_sel, y_sel)(pool)[0])
    validation = by_round(val(pool)[0])
    rows = []
    for n in range(1, top + 1):
        for name, chooser in ((INIT_CHOICE, before), (RESTARTS, after)):
            pick = chooser[:, :n].argmax(1, keepdim=True)
            rows += rows_of(name, n, 6, validation.gather(1, pick)[:, 0])
    return rows


# ----------------------------------------------------------------------------- experiment 2

def pair_of(w1: Tensor, w2: Tensor, width: int) -> Tensor:
    """The two hidden units the network relies on most: largest |output weight| x |input weights|, a
    bound on how much each can move the logit per unit of input. (R, 2) indices."""
    effect = w2[:, :width].abs() * w1[:, :width].norm(dim=-1)
    return effect.topk(2, dim=1).indices


def pair_params(params: dict[str, Tensor], pairs: Tensor) -> dict[str, Tensor]:
    """The width-2 NaiveBoolNet of the chosen hidden units (with the network's output bias)."""
    rows = torch.arange(len(pairs), device=pairs.device)[:, None]
    return {"hidden.weight": params["hidden.weight"][rows, pairs], "hidden.bias": params["hidden.bias"][rows, pairs],
            "output.weight": params["output.weight"][rows, 0, pairs][:, None], "output.bias": params["output.bias"]}


def run_bool(s: eval_bool.Settings, gen: torch.Generator) -> list[report.Row]:
    widths = [w for w in s.sizes() if w >= 3]
    if not widths:
        raise cli.UsageError("--max-width must be at least 3: a width-2 sub-network needs a wider network")
    rows = []
    with report.bar(3 * s.steps, "mechanism (bool)") as bar:
        wide = engine.init_stack([eval_bool.model(s, "Naive", w) for w in s.sizes()], s.rounds, gen)
        start = {k: v.clone() for k, v in wide.params.items()}
        eval_bool.fit(s, gen, wide, bar)
        x_val, y_val = data.and_points((wide.rounds, eval_bool.EVAL_POINTS), gen)
        wide_scores = engine.evaluate(wide, lambda a, b: ((x_val[a:b],), y_val[a:b]), engine.macro_f1)[0]
        chosen, randoms = [], []
        for g, w in zip(wide.groups, s.sizes()):
            rows += rows_of(WIDE, w, 4 * w + 1, wide_scores[g.start:g.stop])
            if w < 3:
                continue
            own = wide.group_params(g)
            pairs = pair_of(own["hidden.weight"], own["output.weight"][:, 0], w)
            sub = pair_params(own, pairs)
            alone = engine.macro_f1(two_layer(sub, x_val[g.start:g.stop]), y_val[g.start:g.stop])
            rows += rows_of(ALONE, w, 9, alone)
            rows += rows_of(HOLDS, w, 4 * w + 1, (alone >= s.solved_at).float())
            chosen.append(pair_params({k: start[k][g.start:g.stop] for k in start}, pairs))
            shuffled = torch.rand(g.stop - g.start, w, generator=gen, device=gen.device).argsort(1)[:, :2]
            randoms.append(pair_params({k: start[k][g.start:g.stop] for k in start}, shuffled))
        for name, parts in ((TICKET, chosen), (CONTROL, randoms)):
            stack = engine.trainable_stack(NaiveBoolNet(2), {k: torch.cat([p[k] for p in parts]) for k in parts[0]})
            eval_bool.fit(s, gen, stack, bar)
            scores = eval_bool.validation(s, gen)(stack)[0]
            for i, w in enumerate(widths):
                rows += rows_of(name, w, 9, scores[i * s.rounds:(i + 1) * s.rounds])
        if 2 in s.sizes():
            g = wide.groups[list(s.sizes()).index(2)]
            rows += rows_of(FRESH, 2, 9, wide_scores[g.start:g.stop])
    return rows


def two_layer(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits of width-2 NaiveBoolNets given their stacked parameters, evaluated with ReLU."""
    with torch.no_grad():
        return NaiveBoolNet(2).eval().stacked_forward(params, x)


# ----------------------------------------------------------------------------- what the rows say

def by_count(rows: list[report.Row], model: str) -> dict[int, np.ndarray]:
    """A model's scores per sweep value, in round order."""
    out: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r.model == model:
            out.setdefault(r.sweep, []).append((r.round, r.score))
    return {n: np.array([v for _, v in sorted(pairs)]) for n, pairs in sorted(out.items())}


def share_line(ax, counts, groups: dict[int, np.ndarray], test, label: str, **style) -> None:
    """The share of rounds passing `test` against the sweep value, with its 95 % Wilson band."""
    xs = [n for n in counts if n in groups]
    if not xs:
        return
    hits = [int(test(groups[n]).sum()) for n in xs]
    totals = [len(groups[n]) for n in xs]
    ci = np.array([report.wilson_ci(h, t) for h, t in zip(hits, totals)]) * 100
    line, = ax.plot(xs, [100 * h / t for h, t in zip(hits, totals)], marker="o", label=label, **style)
    ax.fill_between(xs, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15)


def profile(ax, groups: dict[int, np.ndarray], unit: str, low: float) -> None:
    """The share of rounds scoring at least t, for every t (a performance profile), per sweep value."""
    taus = np.linspace(low, 1.0, 301)
    for i, (n, scores) in enumerate(groups.items()):
        ax.plot(taus, [100 * (scores >= t).mean() for t in taus], color=f"C{i % 10}", label=f"{unit} {n}")
    ax.set(xlabel="score threshold t", ylabel="rounds scoring at least t (%)", title="performance profile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def draw(experiment: str):
    unit = "filters" if experiment == "cnn" else "width"

    def figure(summaries, rows: list[report.Row], solved_at: float):
        from matplotlib.figure import Figure as MplFigure
        wide = by_count(rows, WIDE)
        counts = list(wide)
        solved = lambda v: v >= solved_at
        panels = 6 if experiment == "cnn" else 3
        fig = MplFigure(figsize=(6 * min(panels, 3), 4.8 * ((panels + 2) // 3)))
        axes = fig.subplots((panels + 2) // 3, 3, squeeze=False).flatten()
        ax = axes[0]
        share_line(ax, counts, wide, solved, "wide network solves")
        share_line(ax, counts, by_count(rows, HOLDS), lambda v: v > 0, "holds a unit that solves alone")
        both = {n: (wide[n] >= solved_at) & (v > 0) for n, v in by_count(rows, HOLDS).items()}
        share_line(ax, counts, both, lambda v: v, "solves and holds one")
        ax.set(xlabel=unit, ylabel="rounds (%)", title="anatomy of the trained wide networks")
        ax = axes[1]
        share_line(ax, counts, wide, solved, "wide network")
        share_line(ax, counts, by_count(rows, TICKET), solved, "best unit rewound, trained alone")
        share_line(ax, counts, by_count(rows, CONTROL), solved, "random unit rewound, trained alone")
        fresh = by_count(rows, FRESH)
        for n, v in fresh.items():
            ax.axhline(100 * solved(v).mean(), color="0.4", linestyle=":", label=f"fresh small network ({unit} {n})")
        ax.set(xlabel=f"{unit} of the wide network", ylabel="solved (%)", title="the ticket test")
        profile(axes[2], wide, unit, 0.5 if experiment == "cnn" else 0.7)
        if experiment == "cnn":
            ax = axes[3]
            align = by_count(rows, ALIGN)
            edges = np.array([-1.0, 0.6, 0.7, 0.8, 0.9, 1.0])
            for i, n in enumerate(counts):
                cos = 2 * align[n] - 1
                bins = np.clip(np.digitize(cos, edges[1:-1]), 0, len(edges) - 2)
                xs, ys, lo, hi = [], [], [], []
                for b in range(len(edges) - 1):
                    inside = bins == b
                    if inside.sum() >= 10:
                        k = int(solved(wide[n][inside]).sum())
                        ci = report.wilson_ci(k, int(inside.sum()))
                        xs.append(cos[inside].mean())
                        ys.append(100 * k / inside.sum())
                        lo.append(100 * ci[0])
                        hi.append(100 * ci[1])
                ys, lo, hi = map(np.array, (ys, lo, hi))
                ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", capsize=2, color=f"C{i}", label=f"{unit} {n}")
            ax.set(xlabel="best cosine of an initial filter with the pattern's kernel (binned, >= 10 rounds a bin)",
                   ylabel="solved (%)", title="exploration at initialization")
            ax = axes[4]
            share_line(ax, counts, wide, solved, "one Naive(n)")
            share_line(ax, counts, by_count(rows, RESTARTS), solved, "best of n trained Naive(1)")
            share_line(ax, counts, by_count(rows, INIT_CHOICE), solved, "best of n Naive(1) at init, trained alone")
            ax.set(xlabel="n", ylabel="solved (%)", title="choosing at init: no width, no retraining")
            ax = axes[5]
            detectors = by_count(rows, DETECTORS)
            means = [float((detectors[n] * n).mean()) for n in counts]
            cis = [report.bootstrap_mean_ci(detectors[n] * n) for n in counts]
            ax.errorbar(counts, means, yerr=[[m - c[0] for m, c in zip(means, cis)], [c[1] - m for m, c in zip(means, cis)]],
                        marker="o", capsize=3, label="all networks")
            solved_only = [float((detectors[n] * n)[solved(wide[n])].mean()) if solved(wide[n]).any() else np.nan
                           for n in counts]
            ax.plot(counts, solved_only, marker="s", label="solved networks")
            ax.set(xlabel=unit, ylabel="filters that solve alone, per network", title="how many detectors")
        for ax in axes[:2].tolist() + ([axes[3], axes[4], axes[5]] if experiment == "cnn" else []):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.text(0.5, 0.005, "bands and bars: 95 % intervals (shares: Wilson; means: bootstrap over rounds)",
                 ha="center", fontsize=8, color="0.4")
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        return lambda tmp: fig.savefig(tmp, format="png", dpi=110)
    return figure


def notes(experiment: str) -> cli.Notes:
    """The key differences with 95 % bootstrap intervals (solved share in points)."""
    def text(rows: list[report.Row], solved_at: float) -> str:
        wide = by_count(rows, WIDE)
        lines = ["key differences a - b in solved share (points), 95 % bootstrap over rounds:"]

        def diff(a: np.ndarray, b: np.ndarray, paired: bool) -> str:
            d = report.difference_ci(a >= solved_at, b >= solved_at, paired)
            return f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"
        holds = by_count(rows, HOLDS)
        for n in [n for n in wide if n in holds]:
            solved = wide[n] >= solved_at
            share = f"{100 * (holds[n][solved] > 0).mean():.1f} %" if solved.any() else "-"
            lines.append(f"  {n}: solved {100 * solved.mean():.1f} %, of which holding a unit that solves alone {share}")
        tickets, controls, fresh = by_count(rows, TICKET), by_count(rows, CONTROL), by_count(rows, FRESH)
        for n in tickets:
            line = (f"  {n}: ticket - control (paired) {diff(tickets[n], controls[n], True)}; "
                    f"ticket - wide (paired) {diff(tickets[n], wide[n], True)}")
            for m, v in fresh.items():
                line += f"; ticket - fresh {m} {diff(tickets[n], v, False)}"
            lines.append(line)
        if experiment == "cnn":
            init, restarts = by_count(rows, INIT_CHOICE), by_count(rows, RESTARTS)
            for n in init:
                if n in wide:
                    lines.append(f"  {n}: init-only choice - one Naive({n}) {diff(init[n], wide[n], False)}; "
                                 f"init-only choice - best of {n} trained (paired) {diff(init[n], restarts[n], True)}")
        return "\n".join(lines)
    return text


def figure(experiment: str) -> report.Figure:
    script = eval_cnn if experiment == "cnn" else eval_bool
    return dataclasses.replace(script.FIGURE, name=f"mechanism_{experiment}", views=(), models=MODELS[experiment],
                               title=f"{script.FIGURE.title}: why width helps", draw=draw(experiment), table=False)


def job(experiment: str, s: cli.Settings) -> cli.Job:
    run = run_cnn if experiment == "cnn" else run_bool
    return cli.Job((figure(experiment),), s, PROTOCOLS[experiment], lambda gen: {f"mechanism_{experiment}": run(s, gen)},
                   notes={f"mechanism_{experiment}": notes(experiment)})


def arguments() -> cli.Parser:
    return cli.study_parser(Path(__file__).name, __doc__, PROTOCOLS, FLAGS)


def jobs(args) -> list[cli.Job]:
    chosen = {e: s for e, (s, _) in cli.study_settings(args, PROTOCOLS).items()}
    if "bool" in chosen and chosen["bool"].max_width < 3:
        raise cli.UsageError("--max-width must be at least 3: a width-2 sub-network needs a wider network")
    return [job(e, s) for e, s in chosen.items()]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
