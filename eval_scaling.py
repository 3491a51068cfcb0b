"""Harder patterns: how much width does exploration need, and does independent exploration predict it?

If each filter of a wide network were an independent try that finds the pattern with probability p (the
solve rate of a one-filter network), a network of n filters would solve with probability 1 - (1 - p)^n.
This study trains Naive(n), n = 1, 2, 4, ..., 64, as the protocol trains experiment 1, on a family of
patterns of growing length 2..8 (the filters are as long as the pattern), and compares the solved share
with that law, drawn from the pattern's own one-filter rate. --family tail (default): two adjacent 1s and a
growing tail of don't-cares, 11, 110, ..., 11000000: the thing to find stays the same while a filter has
more positions to get right (near zero), so a lucky filter should get rarer with length. --family ones:
11, 111, ..., 11111111, every position constrained (these turn out to get easier with length). It also gives n50, the filters needed for half of the rounds to be solved
(interpolated in log n; 95 % bootstrap interval over rounds), against what independence predicts.
Writes scaling_cnn.{png,csv,json}.
"""
import interrupts; interrupts.install()             # noqa: E702  (first: Ctrl-C during the imports too)
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch

import cli
import data
import engine
import eval_cnn
import report

FLAGS = ["rounds", "steps", "lr", "momentum", "optimizer", "solved_at", "min_filters", "max_filters", "seq_len",
         "family", "min_length", "max_length"]
FAMILIES = {"tail": lambda k: "11" + "0" * (k - 2) if k >= 2 else "1", "ones": lambda k: "1" * k}
RESAMPLES = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scaling(eval_cnn.Settings):
    """Experiment 1's settings, a range of pattern lengths, and filter counts 1, 2, 4, ... up to --max-filters."""
    family: str = cli.setting("the patterns: 11 and a tail of don't-cares (tail), or all 1s (ones)",
                              choices=tuple(FAMILIES))
    min_length: int = cli.setting("shortest pattern", cli.within(1, 63), "in [1, 63]")
    max_length: int = cli.setting("longest pattern", cli.within(1, 63), "in [1, 63]")

    def lengths(self) -> range:
        return cli.sweep_range(self.min_length, self.max_length, "min_length", "max_length")

    def counts(self) -> list[int]:
        """The filter counts: the powers of two in [--min-filters, --max-filters]."""
        return [n for n in (2 ** i for i in range(self.max_filters.bit_length())) if n >= self.min_filters
                and n <= self.max_filters] or [self.min_filters]

    def patterns(self) -> list[data.Pattern]:
        return [data.Pattern(FAMILIES[self.family](k), self.seq_len) for k in self.lengths()]

    def check(self) -> "Scaling":
        super().check()
        if self.max_length >= self.seq_len:
            raise cli.UsageError(f"--max-length ({self.max_length}) must be below --seq-len ({self.seq_len})")
        return self

    def quick(self) -> "Scaling":
        return dataclasses.replace(super().quick(), max_filters=min(self.max_filters, 4),
                                   max_length=min(self.max_length, self.min_length + 1))

    def memory_bytes(self) -> int:
        """One pattern's stack at a time; each filter count at its own size."""
        return self.rounds * sum(self.counts()) * 2 * self.seq_len * 4 * 4


PROTOCOL = Scaling(**{**dataclasses.asdict(eval_cnn.PROTOCOL), "max_filters": 64}, family="tail", min_length=2,
                   max_length=8)


def name(pattern: data.Pattern) -> str:
    return f"pattern {pattern.text}"


def run(s: Scaling, gen: torch.Generator) -> list[report.Row]:
    rows = []
    with report.bar(len(s.patterns()) * s.steps, "scaling") as bar:
        for pattern in s.patterns():
            each = dataclasses.replace(s, pattern=pattern.text)
            x, y = data.pattern_validation_set(eval_cnn.VALIDATION_PAIRS, gen, pattern)
            stack = eval_cnn.train(each, gen, [eval_cnn.model(each, "Naive", n) for n in s.counts()], bar)
            scored = eval_cnn.shared_set(x, y)(stack)
            rows += report.rows_of(stack, [(name(pattern), n) for n in s.counts()], scored)
    return rows


# ----------------------------------------------------------------------------- the law and n50

def solved_by_count(rows: list[report.Row], model: str, solved_at: float) -> dict[int, np.ndarray]:
    out: dict[int, list[bool]] = {}
    for r in rows:
        if r.model == model:
            out.setdefault(r.sweep, []).append(r.score >= solved_at)
    return {n: np.array(v) for n, v in sorted(out.items())}


def n50(shares: dict[int, float]) -> float:
    """Filters needed for half of the rounds to be solved: the first crossing of 0.5, interpolated
    linearly in log2(n) between the counts measured; inf if no count reaches it; the smallest count if
    it is already there."""
    counts = sorted(shares)
    if shares[counts[0]] >= 0.5:
        return float(counts[0])
    for lo, hi in zip(counts, counts[1:]):
        if shares[hi] >= 0.5:
            t = (0.5 - shares[lo]) / (shares[hi] - shares[lo])
            return float(2 ** (math.log2(lo) + t * (math.log2(hi) - math.log2(lo))))
    return math.inf


def n50_interval(solved: dict[int, np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """n50 and its 95 % percentile-bootstrap interval (rounds resampled within each filter count)."""
    rng = np.random.default_rng(seed)
    draws = [n50({n: float(v[rng.integers(0, len(v), len(v))].mean()) for n, v in solved.items()})
             for _ in range(RESAMPLES)]
    lo, hi = np.quantile(draws, [0.025, 0.975], method="inverted_cdf")      # an order statistic: inf stays inf
    return n50({n: float(v.mean()) for n, v in solved.items()}), float(lo), float(hi)


def independent(p: float, n: np.ndarray | float) -> np.ndarray | float:
    """The solved share of n independent tries that each succeed with probability p."""
    return 1 - (1 - p) ** n


def independent_n50(p: float) -> float:
    """The n (continuous) at which n independent tries succeed half of the time."""
    if p >= 0.5:
        return 1.0
    return math.inf if p <= 0 else math.log(0.5) / math.log(1 - p)


def law(rows: list[report.Row], solved_at: float) -> dict[str, dict]:
    """Per pattern: its one-filter rate with its Wilson interval, the measured and predicted n50, and the
    measured and predicted solved share at each count."""
    out = {}
    for model in dict.fromkeys(r.model for r in rows):
        solved = solved_by_count(rows, model, solved_at)
        one = solved[min(solved)]
        p, (p_lo, p_hi) = float(one.mean()), report.wilson_ci(int(one.sum()), len(one))
        out[model] = {"length": len(model.split()[-1]), "p": (p, p_lo, p_hi), "solved": solved,
                      "n50": n50_interval(solved),
                      "n50_independent": (independent_n50(p), independent_n50(p_hi), independent_n50(p_lo))}
    return out


def fmt(n: float) -> str:
    return "not reached" if math.isinf(n) else f"{n:.1f}"


def notes(rows: list[report.Row], solved_at: float) -> str:
    lines = ["independent exploration, per pattern: one-filter rate p [95 % Wilson]; n50 measured [95 % bootstrap] "
             "and predicted by 1 - (1 - p)^n [from p's interval]; solved share measured / predicted at each count:"]
    for model, f in law(rows, solved_at).items():
        p, p_lo, p_hi = f["p"]
        (m, m_lo, m_hi), (q, q_lo, q_hi) = f["n50"], f["n50_independent"]
        cells = ", ".join(f"{n}: {100 * v.mean():.0f}/{100 * independent(p, n):.0f}" for n, v in f["solved"].items())
        lines.append(f"  {model}: p {100 * p:.1f} % [{100 * p_lo:.1f}, {100 * p_hi:.1f}]; n50 {fmt(m)} "
                     f"[{fmt(m_lo)}, {fmt(m_hi)}] vs {fmt(q)} [{fmt(q_lo)}, {fmt(q_hi)}]; {cells}")
    return "\n".join(lines)


def draw(summaries: list[report.Summary], rows: list[report.Row], solved_at: float):
    """Left: solved share against n per pattern, measured (Wilson band) and the independence law from its
    one-filter rate (dashed, with the band of that rate's interval). Right: n50 against pattern length."""
    from matplotlib.figure import Figure as MplFigure
    fitted = law(rows, solved_at)
    fig = MplFigure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    for i, (model, f) in enumerate(fitted.items()):
        color = f"C{i}"
        counts = np.array(sorted(f["solved"]), dtype=float)
        share = np.array([f["solved"][n].mean() for n in sorted(f["solved"])]) * 100
        ci = np.array([report.wilson_ci(int(v.sum()), len(v)) for v in f["solved"].values()]) * 100
        left.plot(counts, share, marker="o", color=color, label=model.replace("pattern ", ""))
        left.fill_between(counts, ci[:, 0], ci[:, 1], color=color, alpha=0.15)
        grid = np.geomspace(counts[0], counts[-1], 50)
        p, p_lo, p_hi = f["p"]
        left.plot(grid, 100 * independent(p, grid), linestyle="--", color=color)
        left.fill_between(grid, 100 * independent(p_lo, grid), 100 * independent(p_hi, grid), color=color, alpha=0.07)
    left.set(xscale="log", xlabel="filters n", ylabel=f"solved (%): accuracy >= {solved_at:g}",
             title="solved share; dashed: independent tries 1 - (1 - p)^n")
    left.set_xscale("log", base=2)
    ticks = sorted({n for f in fitted.values() for n in f["solved"]})
    left.set_xticks(ticks, [str(n) for n in ticks])
    left.minorticks_off()
    left.grid(alpha=0.3)
    left.legend(title="pattern", fontsize=8, loc="best")
    top = max((max(f["solved"]) for f in fitted.values()), default=1)
    for label, key, style in (("measured", "n50", dict(marker="o", color="C0")),
                              ("independent tries", "n50_independent", dict(marker="s", color="C3", linestyle="--"))):
        xs = np.array([f["length"] for f in fitted.values()], dtype=float)
        mid, lo, hi = (np.array([min(f[key][j], 4 * top) for f in fitted.values()]) for j in range(3))
        right.errorbar(xs, mid, yerr=[np.maximum(mid - lo, 0), np.maximum(hi - mid, 0)], capsize=3, label=label, **style)
    right.axhline(top, color="0.5", linewidth=0.8)
    right.text(right.get_xlim()[0], top, f"  largest n trained ({top})", va="bottom", fontsize=8, color="0.4")
    right.set(yscale="log", xlabel="pattern length", ylabel="n50: filters for half of the rounds solved",
              title="n50 (95 % bootstrap); above the line: never reached")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    return lambda tmp: fig.savefig(tmp, format="png", dpi=110)


def figure(s: Scaling) -> report.Figure:
    return report.Figure(name="scaling_cnn", title=f"patterns: {s.family}", ylabel="validation accuracy (%)",
                         solved_label="accuracy >= {solved_at:.1%}", views=(), percent=True,
                         models=tuple(name(p) for p in s.patterns()), draw=draw)


def arguments() -> cli.Parser:
    p = cli.parser(Path(__file__).name, __doc__)
    cli.add_settings(p, PROTOCOL, FLAGS)
    cli.add_run_flags(p)
    return p


def jobs(args) -> list[cli.Job]:
    s = cli.settings_of(args, PROTOCOL)
    return [cli.Job((figure(s),), s, PROTOCOL, lambda gen: {"scaling_cnn": run(s, gen)}, notes={"scaling_cnn": notes})]


if __name__ == "__main__":
    sys.exit(cli.main(arguments(), jobs))
