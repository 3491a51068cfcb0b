"""Results on disk and on screen: the per-model CSV, the settings JSON, intervals, table and figure.

A run's figure, CSV and JSON are one unit on disk: all three are written to temporary files in
the same folder, then renamed together, with Ctrl-C and SIGTERM held back during the renames;
any failure before that leaves the previous unit as it was and no temporary file behind.
"""
import csv
import functools
import hashlib
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

import interrupts

COLUMNS = ("model", "sweep", "params", "round", "score", "diverged")     # every results file's first columns
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?")                # as repr() and str() write them
TEXT = re.compile(r"[0-9A-Za-z_.:;+-]{0,256}")
LARGEST = 10 ** 9                # no sweep value, parameter count or round of this project comes near
MODELS = ("Naive", "RandomConv", "HyperNetwork", "hardcoded")
Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


class DataError(ValueError):
    """A results file that cannot be read as this project's CSV."""


@dataclass(frozen=True)
class Column:
    """A column a results file carries beyond the common ones. A key column is a setting the row ran at
    (a learning rate, a pattern): rows that differ in it are summarised apart. Any other column is a
    measurement of the row's network (a cosine, a count)."""
    name: str
    kind: type                       # int, float or str
    key: bool = True
    low: float = -math.inf           # the range of a number
    high: float = math.inf

    def parse(self, text: str, where: str) -> int | float | str:
        if self.kind is str:
            if not TEXT.fullmatch(text):
                raise DataError(f"{where}: {self.name} must be a short plain word, got {text[:40]!r}")
            return text
        value = _number(text, self.kind, f"{where}: {self.name}")
        if not self.low <= value <= self.high:
            raise DataError(f"{where}: {self.name} must be in [{self.low:g}, {self.high:g}], got {text[:40]}")
        return value


@dataclass(frozen=True)
class Row:
    model: str
    sweep: int
    params: int
    round: int
    score: float
    diverged: bool = False       # parameters or logits not finite after training
    extra: tuple = ()            # (name, value) of the results file's own columns, in its order

    def get(self, name: str):
        return dict(self.extra)[name]

    def keys(self, columns: tuple[Column, ...]) -> tuple:
        """The values of its key columns: what, beside model and sweep, says which arm it belongs to."""
        values = dict(self.extra)
        return tuple(values[c.name] for c in columns if c.key)


@dataclass(frozen=True)
class Summary:
    model: str
    sweep: int
    params: int
    rounds: int
    mean: float
    mean_ci: tuple[float, float]
    solved: float
    solved_ci: tuple[float, float]
    diverged: int = 0
    keys: tuple = ()                 # its key columns' values, as `Row.keys`


# ----------------------------------------------------------------------------- intervals

@functools.lru_cache(maxsize=4)
def resampled(sizes: tuple[int, ...], resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """The bootstrap's draws of indices for samples of these sizes, (resamples, size) each, in turn from one
    generator seeded `seed`: the same for every interval of samples of the same sizes, so drawn once (a
    run's notes ask for hundreds) and kept read-only."""
    rng = np.random.default_rng(seed)
    draws = tuple(rng.integers(0, n, (resamples, n)) for n in sizes)
    for d in draws:
        d.setflags(write=False)
    return draws


def bootstrap_mean_ci(scores: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean (resampling rounds); NaN scores count as 0."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
    if len(scores) < 2:
        return float(scores.mean()), float(scores.mean())
    means = scores[resampled((len(scores),), resamples, seed)[0]].mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def difference_ci(a: np.ndarray, b: np.ndarray, paired: bool, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0) -> tuple[float, float, float]:
    """Mean of a minus mean of b and its 95 % percentile-bootstrap interval. Paired: a[i] and b[i]
    come from one round and are resampled together; otherwise each sample is resampled on its own."""
    a, b = (np.nan_to_num(np.asarray(s, dtype=float), nan=0.0) for s in (a, b))
    if paired:
        ia = ib = resampled((len(a),), resamples, seed)[0]
    else:
        ia, ib = resampled((len(a), len(b)), resamples, seed)
    lo, hi = np.quantile(a[ia].mean(1) - b[ib].mean(1), [0.025, 0.975])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def wilson_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial share successes / n."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)      # the ends are exact at 0 and n
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def summarize(rows: Iterable[Row], solved_at: float, columns: tuple[Column, ...] = (), solved_from: str = "score"
              ) -> list[Summary]:
    """One summary per (model, sweep, key columns), in order of first appearance; solved means the
    `solved_from` column (the score, by default) is at least solved_at."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.sweep, row.keys(columns)), []).append(row)
    out = []
    for (model, sweep, keys), members in groups.items():
        scores = np.array([r.score for r in members])
        deciding = scores if solved_from == "score" else np.array([r.get(solved_from) for r in members])
        solved = int((np.nan_to_num(deciding, nan=-1.0) >= solved_at).sum())
        out.append(Summary(model, sweep, members[0].params, len(members), float(np.nan_to_num(scores, nan=0.0).mean()),
                           bootstrap_mean_ci(scores), solved / len(members), wilson_ci(solved, len(members)),
                           sum(r.diverged for r in members), keys))
    return out


def by_model(rows: Iterable[Row], series: Callable[[Row], str] = lambda r: r.model
             ) -> dict[str, dict[int, np.ndarray]]:
    """The one grouping of results: {series: {sweep: scores in round order}} (the shape rliable takes:
    one score matrix per method), series and sweep values in order of first appearance."""
    out: dict[str, dict[int, list[Row]]] = {}
    for r in rows:
        out.setdefault(series(r), {}).setdefault(r.sweep, []).append(r)
    return {name: {n: np.array([r.score for r in sorted(members, key=lambda r: r.round)]) for n, members in sweeps.items()}
            for name, sweeps in out.items()}


def compare(a: np.ndarray, b: np.ndarray, paired: bool, solved_at: float) -> str:
    """a minus b, as printed everywhere: the mean score and the solved share (in points), each with its 95 %
    bootstrap interval (paired: a[i] and b[i] are one round's, resampled together)."""
    mean = difference_ci(a, b, paired)
    solved = difference_ci(np.asarray(a) >= solved_at, np.asarray(b) >= solved_at, paired)
    return (f"mean {mean[0]:+.4f} [{mean[1]:+.4f}, {mean[2]:+.4f}], solved {100 * solved[0]:+.1f} "
            f"[{100 * solved[1]:+.1f}, {100 * solved[2]:+.1f}] points")


# ----------------------------------------------------------------------------- files

def csv_text(rows: Iterable[Row], columns: tuple[Column, ...] = ()) -> str:
    """The common columns, then the file's own, in the order `columns` declares them."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + tuple(c.name for c in columns))
    for r in rows:
        values = dict(r.extra)
        own = [repr(float(values[c.name])) if c.kind is float else values[c.name] for c in columns]
        writer.writerow((r.model, r.sweep, r.params, r.round, repr(float(r.score)), int(r.diverged), *own))
    return buf.getvalue()


def json_text(settings: dict) -> str:
    """Strict JSON: a NaN or an infinity is an error, not a bare `NaN`."""
    return json.dumps(settings, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_unit(files: dict[Path, Callable[[Path], None]]) -> None:
    """Write each file with its writer to a temporary file beside it, then rename them all together.

    An error or a signal before the renames leaves every old file untouched and no temporary file;
    during the renames, SIGINT and SIGTERM wait, and a failing rename puts the old files back.
    """
    staged: dict[Path, str] = {}
    kept: dict[Path, str] = {}
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, write in files.items():
            with interrupts.held():
                fd, staged[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                interrupts.TEMPORARY.add(staged[path])
            os.close(fd)
            os.chmod(staged[path], 0o666 & ~umask)           # an ordinary file's mode, not mkstemp's 0600
            write(Path(staged[path]))
        with interrupts.held():
            for path in files:
                if path.exists():
                    kept[path] = f"{staged[path]}.old"
                    interrupts.TEMPORARY.add(kept[path])
                    os.link(path, kept[path])
            done = []
            try:
                for path in files:
                    os.replace(staged[path], path)
                    done.append(path)
            except OSError:
                for path in done:
                    if path in kept:
                        os.replace(kept[path], path)
                    else:
                        os.unlink(path)
                raise
    finally:
        with interrupts.held():
            for tmp in [*staged.values(), *kept.values()]:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                interrupts.TEMPORARY.discard(tmp)


def digest(text: str) -> str:
    """The SHA-256 of a results file's text: its run's record holds it, so an edited file is refused."""
    return hashlib.sha256(text.encode()).hexdigest()


def write_text(text: str) -> Callable[[Path], None]:
    """A writer of `text` for `write_unit`."""
    return lambda tmp: tmp.write_text(text)


def write_bytes(data: bytes) -> Callable[[Path], None]:
    """A writer of `data` (a figure's PNG) for `write_unit`."""
    return lambda tmp: tmp.write_bytes(data)


def read_csv(path: Path, models: tuple[str, ...] = MODELS, columns: tuple[Column, ...] = ()) -> list[Row]:
    """Read a results CSV as this project writes it, with the columns `columns` declares after the common
    ones (checked by name and type); any defect raises DataError with a one-line reason."""
    if not path.is_file():
        raise DataError(f"no results file {path}: run without --plot-only first")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable text file ({e.__class__.__name__})") from None
    if text and not text.endswith("\n"):
        raise DataError(f"{path}: the last line is cut short (the file does not end with a newline)")
    if "\r" in text or '"' in text:
        raise DataError(f"{path}: not a CSV of this project (carriage returns or quoted fields)")
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise DataError(f"{path}: not a CSV of this project ({e})") from None
    header, expected = (records[0] if records else None), COLUMNS + tuple(c.name for c in columns)
    if header is None or tuple(header) != expected:
        raise DataError(f"{path}: expected the columns {','.join(expected)}, found {','.join(header or [])[:80]!r}")
    rows, seen, sizes, known = [], set(), {}, [{} for _ in header]
    for line, fields in enumerate(records[1:], start=2):
        rows.append(_row(fields, models, columns, f"{path}, line {line}", known))
        key = (rows[-1].model, rows[-1].sweep, *rows[-1].keys(columns))
        if (*key, rows[-1].round) in seen:
            raise DataError(f"{path}, line {line}: a second row for {' '.join(map(str, key))} round {rows[-1].round}")
        seen.add((*key, rows[-1].round))
        if sizes.setdefault(key, rows[-1].params) != rows[-1].params:
            raise DataError(f"{path}, line {line}: {key[0]} {key[1]} has two parameter counts")
    if not rows:
        raise DataError(f"{path}: no result rows")
    return rows


def _number(text: str, kind: type, where: str) -> int | float:
    """An integer or a finite float as this project writes them (plain ASCII digits)."""
    if len(text) > 1000 or not NUMBER.fullmatch(text) or (kind is int and not text.lstrip("-").isdigit()):
        raise DataError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {text[:40]!r}")
    value = kind(text)
    if kind is float and value == 0 and any(d in "123456789" for d in text.split("e")[0]):
        raise DataError(f"{where} underflows to 0: {text[:40]!r}")
    return value


def _row(fields: list[str], models: tuple[str, ...], columns: tuple[Column, ...], where: str,
         known: list[dict]) -> Row:
    """One row of a results file. `known`: per column, the texts read so far and their values (a file's values
    repeat from row to row: each distinct text of a column is parsed once)."""
    if len(fields) != len(COLUMNS) + len(columns):
        raise DataError(f"{where}: expected {len(COLUMNS) + len(columns)} fields, found {len(fields)}")
    model, width = fields[0], len(COLUMNS)
    if model not in models:
        raise DataError(f"{where}: unknown model {model[:40]!r}")
    try:
        sweep, params, rnd, score, diverged = _values(fields, known, 1, width, _common)
    except DataError:
        raise DataError(f"{where}: sweep, params, round and diverged must be integers and score a number") from None
    if not (1 <= sweep <= LARGEST and 1 <= params <= LARGEST and 0 <= rnd <= LARGEST):
        raise DataError(f"{where}: sweep and params must be in [1, {LARGEST}] and round in [0, {LARGEST}]")
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise DataError(f"{where}: score must be a number in [0, 1], got {score}")
    if diverged not in (0, 1):
        raise DataError(f"{where}: diverged must be 0 or 1, got {diverged}")
    if diverged and score >= 1:
        raise DataError(f"{where}: a diverged round answers wrong somewhere: its score cannot be {score}")
    own = _values(fields, known, width, len(fields), lambda j, text: columns[j - width].parse(text, where))
    return Row(model, sweep, params, rnd, score, bool(diverged), tuple(zip((c.name for c in columns), own)))


def _common(j: int, text: str) -> int | float:
    """Field j of the common columns but the model: the score a number (inf and nan read, refused later), the
    others integers."""
    if COLUMNS[j] != "score":
        return _number(text, int, "")
    return float(text) if text.lower().lstrip("+-") in ("inf", "infinity", "nan") else _number(text, float, "")


def _values(fields: list[str], known: list[dict], start: int, stop: int, parse: Callable[[int, str], object]) -> list:
    """fields[start:stop] read through `known`, parse(j, text) where column j shows a text for the first time."""
    values = list(map(dict.get, known[start:stop], fields[start:stop]))
    if None in values:
        for j, value in enumerate(values, start):
            if value is None:
                values[j - start] = known[j][fields[j]] = parse(j, fields[j])
    return values


# ----------------------------------------------------------------------------- table and figure

@dataclass(frozen=True)
class View:
    """One row of panels: the mean score and the solved share against an x, for the summaries kept."""
    xlabel: str
    x_of: Callable[[Summary], float]
    keep: Callable[[Summary], bool] = lambda s: True
    title: str = ""                  # before the panel titles
    log_x: int = 0                   # base of a log x axis (0: linear)
    series: Callable[[Summary], str] = lambda s: s.model      # one line per series


@dataclass(frozen=True)
class Figure:
    """How one experiment's results are drawn."""
    name: str                        # file stem in --out
    title: str
    ylabel: str
    solved_label: str                # what "solved" means; {solved_at} is the threshold of the run
    views: tuple[View, ...]
    percent: bool = False            # show scores in %
    models: tuple[str, ...] = MODELS # the model names its CSV may hold
    columns: tuple[Column, ...] = () # the columns its CSV carries beyond the common ones
    solved_from: str = "score"       # the column whose value decides "solved" (a score on independent data),
                                     # where the file declares it (a study's figure made from this one may not)
    styles: tuple[tuple[str, dict], ...] = ()   # (series, matplotlib style) beyond the defaults
    table: bool = True               # print the table (a long grid prints its notes only)
    render: Callable[[list[Summary], list[Row], float], bytes] | None = None  # a figure of its own: its PNG


def deciding(figure: Figure) -> str:
    """The column that decides "solved" in a figure's file: its `solved_from` if it declares it, else the score."""
    return figure.solved_from if figure.solved_from in {c.name for c in figure.columns} else "score"


def table(summaries: list[Summary], columns: tuple[Column, ...] = ()) -> str:
    """One line per summary, its key columns after the model; a single fixed network (one round) has no
    interval to show."""
    named = lambda s: _named(s, columns)
    width = max([17] + [len(named(s)) + 2 for s in summaries])
    lines = [f"{'model':<{width}}{'sweep':>6}{'params':>7}{'mean':>9}{'95% CI':>19}{'solved':>9}{'95% CI':>17}{'rounds':>8}"]
    for s in summaries:
        if s.rounds > 1:
            cis = (f"   [{s.mean_ci[0]:.4f}, {s.mean_ci[1]:.4f}]", f"   [{s.solved_ci[0]:.3f}, {s.solved_ci[1]:.3f}]")
        else:
            cis = (f"{'-':>19}", f"{'-':>17}")
        lines.append(f"{named(s):<{width}}{s.sweep:>6}{s.params:>7}{s.mean:>9.4f}{cis[0]}{s.solved:>9.3f}{cis[1]}{s.rounds:>8}")
    return "\n".join(lines + [divergence_lines(summaries, columns)] if any(s.diverged for s in summaries) else lines)


def _named(s: Summary, columns: tuple[Column, ...]) -> str:
    keys = [c.name for c in columns if c.key]
    return " ".join([s.model, *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(keys, s.keys))])


def divergence(summaries: list[Summary], columns: tuple[Column, ...] = ()) -> dict[str, int]:
    """Diverged rounds per summary that has any (for the run's record)."""
    return {f"{_named(s, columns)} {s.sweep}": s.diverged for s in summaries if s.diverged}


def divergence_lines(summaries: list[Summary], columns: tuple[Column, ...] = ()) -> str:
    """One line per summary with diverged rounds; a line saying there are none otherwise."""
    lines = [f"{name}: {count} of {s.rounds} rounds diverged (non-finite parameters or logits; scored as wrong answers)"
             for (name, count), s in zip(divergence(summaries, columns).items(), [s for s in summaries if s.diverged])]
    total = sum(s.rounds for s in summaries)
    return "\n".join(lines) if lines else f"no round diverged ({total} rounds)"


STYLE = {"Naive": dict(color="C0", marker="o"), "RandomConv": dict(color="C1", marker="s"),
         "HyperNetwork": dict(color="C2", marker="^", linestyle="none"),
         "hardcoded": dict(color="red", marker="x", linestyle="none", markersize=10, mew=2)}


def plot(summaries: list[Summary], fig_spec: Figure, solved_at: float) -> bytes:
    """A row of two panels per view: the mean score with its 95 % interval, the solved share with its own;
    returns its PNG."""
    scale = 100.0 if fig_spec.percent else 1.0
    rows = len(fig_spec.views)
    fig, axes = canvas(rows, 2, (12, 4.8 * rows))
    for view, (left, right) in zip(fig_spec.views, axes):
        kept = [s for s in summaries if view.keep(s)]
        colors = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(view.series(s) for s in summaries))}
        for model in dict.fromkeys(view.series(s) for s in kept):
            members = [s for s in kept if view.series(s) == model]
            xs = np.array([view.x_of(s) for s in members], dtype=float)
            style = {**STYLE.get(model, dict(color=colors[model], marker="o")), **dict(fig_spec.styles).get(model, {})}
            if len(members) <= 2 and "linestyle" not in style:   # a line would draw sizes never measured
                style = {**style, "linestyle": "none"}
            for ax, value, ci, k in ((left, "mean", "mean_ci", scale), (right, "solved", "solved_ci", 100.0)):
                ys = np.array([getattr(s, value) for s in members]) * k
                lo = np.array([getattr(s, ci)[0] for s in members]) * k
                hi = np.array([getattr(s, ci)[1] for s in members]) * k
                if all(s.rounds == 1 for s in members):      # fixed networks, not samples: no interval
                    ax.plot(xs, ys, label=model, **style)
                elif style.get("linestyle") == "none":
                    ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], label=model, capsize=3, **style)
                else:
                    ax.plot(xs, ys, label=model, **style)
                    ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.2)
        prefix = f"{view.title}: " if view.title else ""
        left.set(title=prefix + fig_spec.title, xlabel=view.xlabel, ylabel=fig_spec.ylabel)
        right.set(title=prefix + "share of rounds solved", xlabel=view.xlabel,
                  ylabel=f"solved (%): {fig_spec.solved_label.format(solved_at=solved_at)}")
        for ax in (left, right):
            if view.log_x:
                ax.set_xscale("log", base=view.log_x)
                ticks = sorted({view.x_of(s) for s in kept})
                if len(ticks) > 10:                    # crowded: powers of the base only
                    ticks = [t for t in ticks if math.log(t, view.log_x).is_integer()]
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
                ax.minorticks_off()
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
    fig.text(0.5, 0.005, "bands and bars: 95 % intervals (mean: bootstrap over rounds; solved share: Wilson, over rounds each "
             "scored on data of its own)",
             ha="center", fontsize=8, color="0.4")
    return png(fig)


MARGINS = dict(left=1.0, right=0.25, top=0.4, bottom=0.75, wgap=0.85, hgap=0.85)   # inches; bottom: the note too


def canvas(rows: int, cols: int, size: tuple[float, float], **margins: float):
    """A matplotlib figure of rows x cols panels (no pyplot: no GUI backend, faster import), and its axes. The
    panels sit at fixed margins, in inches (MARGINS, or those given): room for the tick labels, axis labels and
    titles of this project's panels and for the note below them, where tight_layout would put them, without
    its pass over every text of the figure (a fifth of the cost of drawing one, or more)."""
    from matplotlib.figure import Figure as MplFigure
    m, (w, h) = {**MARGINS, **margins}, size
    width = (w - m["left"] - m["right"] - (cols - 1) * m["wgap"]) / cols
    height = (h - m["top"] - m["bottom"] - (rows - 1) * m["hgap"]) / rows
    fig = MplFigure(figsize=size)
    return fig, fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=m["left"] / w, right=1 - m["right"] / w, bottom=m["bottom"] / h, top=1 - m["top"] / h,
        wspace=m["wgap"] / width, hspace=m["hgap"] / height))


SMALLEST_FONT = 6.0                # points: a text shrunk to fit its panel goes no smaller


def fit_texts(fig) -> None:
    """Shrink every panel title wider than its panel, and every y-label taller than it, until it fits: a long
    title would run into the next panel, a long label off the figure. Texts that fit are left as they are."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for text, room, extent in ((ax.title, box.width, lambda e: e.width),
                                   (ax.yaxis.label, box.height, lambda e: e.height)):
            need = extent(text.get_window_extent(renderer)) if text.get_text() else 0.0
            while need > room and text.get_fontsize() > SMALLEST_FONT:   # a text's extent is near, not exactly,
                text.set_fontsize(max(SMALLEST_FONT, 0.97 * text.get_fontsize() * room / need))   # linear in size
                need = extent(text.get_window_extent(renderer))


def png(fig) -> bytes:
    """Every figure's PNG, as the one place that draws it (its texts fitted to their panels first)."""
    fit_texts(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- rows of a trained stack

def rows_of(stack, labels: list[tuple[str, int]], scored, keys: tuple = (), measured: list[tuple] | None = None,
            groups: list | None = None) -> list[Row]:
    """One row per round of a stack's groups (default: all); labels[i] = (model, sweep value) of the i-th
    group; `keys`: the (name, value) key columns every row carries; `measured`: each round of the stack's
    own (name, value) measurements, in round order."""
    scores, diverged = (t.tolist() for t in scored)
    own = measured if measured is not None else [()] * len(scores)
    rows = []
    for group, (model, sweep) in zip(stack.groups if groups is None else groups, labels):
        size = group.template.final_size                    # counted once a group, not once a row
        rows += [Row(model, sweep, size, r - group.start, scores[r], diverged[r], (*keys, *own[r]))
                 for r in range(group.start, group.stop)]
    return rows


def score_module(net, x, y, metric) -> float:
    """Score one plain module (a hard-coded network) with the metric the stacks are scored with."""
    import torch
    with torch.no_grad():
        return metric(net.eval()(x)[:, 0][None], y).item()


def bar(total: int, desc: str):
    """The progress bar of a run's training steps."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="step")
