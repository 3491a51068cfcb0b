import csv
import dataclasses
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
import eval_bool
import eval_cnn
import report
from background import background

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"cnn": eval_cnn, "bool": eval_bool}


def run(script, *argv):
    module = SCRIPTS[script]
    return cli.main(module.arguments(), module.jobs, [str(a) for a in argv])


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_writes_valid_png_csv_json(quick_runs, script):
    """(conftest's shared quick run, its files as it wrote them.)"""
    folder, stdout, written = quick_runs[script]
    name = SCRIPTS[script].FIGURE.name
    assert sorted(written) == [f"{name}.csv", f"{name}.json", f"{name}.png"], "three files, no temporary one"
    png = written[f"{name}.png"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    rows = list(csv.reader(io.StringIO(written[f"{name}.csv"].decode())))
    assert tuple(rows[0]) == report.COLUMNS + tuple(c.name for c in SCRIPTS[script].FIGURE.columns)
    models = {r[0] for r in rows[1:]}
    assert {"Naive", "HyperNetwork", "hardcoded"} <= models
    assert all(0.0 <= float(r[4]) <= 1.0 for r in rows[1:]) and {r[5] for r in rows[1:]} == {"0"}
    hard = [r for r in rows[1:] if r[0] == "hardcoded"]
    assert len(hard) == 1 and hard[0][3] == "0"
    settings = json.loads(written[f"{name}.json"])
    assert settings["seed"] == 0 and settings["device_used"] == "cpu" and settings["torch"] == torch.__version__
    assert "train_eval_seconds" in settings and settings["quick"] is True
    assert settings["settings"]["rounds"] == 10 and settings["settings"]["lr"] == 0.1
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert "wrote" in stdout and "HyperNetwork" in stdout


def test_cnn_csv_rows_follow_the_protocol(quick_runs):
    folder, *_ = quick_runs["cnn"]
    rows = report.read_csv(folder / "cnn_experiment.csv", columns=eval_cnn.FIGURE.columns)
    naive = [r for r in rows if r.model == "Naive"]
    assert {(r.sweep, r.params) for r in naive} == {(1, 6), (2, 11), (3, 16)}
    assert {(r.sweep, r.params) for r in rows if r.model == "RandomConv"} == {(1, 2), (2, 3), (3, 4)}
    assert {(r.sweep, r.params) for r in rows if r.model == "HyperNetwork"} == {(1, 5), (2, 5), (3, 5)}
    assert sorted(r.round for r in naive if r.sweep == 2) == list(range(10))
    assert [r.score for r in rows if r.model == "hardcoded"] == [1.0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_plot_only_reproduces_the_table_of_the_run(quick_runs, redrawn, script):
    """(conftest's `redrawn`: the quick run's figure deleted, then `--plot-only` in its folder.)"""
    _, stdout, _ = quick_runs[script]
    code, replot, _, after = redrawn[script]
    assert code == 0
    assert replot.split("wrote")[0] == stdout.split("wrote")[0]
    assert f"{SCRIPTS[script].FIGURE.name}.png" in after


def test_same_seed_same_csv_other_seed_other_csv(tmp_path):
    args = ["--quick", "--max-width", "2", "--rounds", "4", "--steps", "60"]
    texts = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        assert run("bool", *args, "--seed", seed, "--out", tmp_path / name) == 0
        texts.append((tmp_path / name / "bool_experiment.csv").read_text())
    assert texts[0] == texts[1] and texts[0] != texts[2]


def test_divergent_run_still_writes_its_figure_and_says_so(tmp_path, capsys):
    assert run("cnn", "--quick", "--lr", "1e30", "--rounds", "3", "--steps", "30", "--out", tmp_path) == 0
    rows = report.read_csv(tmp_path / "cnn_experiment.csv", columns=eval_cnn.FIGURE.columns)
    assert all(0.0 <= r.score <= 1.0 for r in rows)
    assert (tmp_path / "cnn_experiment.png").stat().st_size > 0
    diverged = [r for r in rows if r.diverged]
    assert diverged and all(r.score <= 0.5 for r in diverged)
    lines = [line for line in capsys.readouterr().out.splitlines() if "diverged" in line]
    assert "Naive 1: 3 of 3 rounds diverged" in "\n".join(lines)


def test_a_sound_run_reports_no_divergence(quick_runs):
    for script in SCRIPTS:
        assert "diverged" not in quick_runs[script][1]


BAD = [
    (["--rounds", "0"], "--rounds must be a positive integer"),
    (["--rounds", "-3"], "--rounds must be a positive integer"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--lr", "0"], "--lr must be a positive finite number"),
    (["--lr", "-1"], "--lr must be a positive finite number"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--lr", "inf"], "--lr must be a positive finite number"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--momentum", "-0.1"], "--momentum must be in [0, 1)"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["--rounds", "x"], "invalid int value"),
    (["--optimizer", "lbfgs"], "invalid choice"),
    (["--lr", "1e31"], "--lr must be a positive finite number (at most 1e+30)"),
    (["--momentum", "nan"], "--momentum must be in [0, 1)"),
    (["--solved-at", "inf"], "--solved-at must be in [0, 1]"),
    (["--solved-at", "nan"], "--solved-at must be in [0, 1]"),
    (["--seed", "99999999999999999999999"], "--seed must be an integer in [0, 2**63 - 1]"),
    (["--seed", "-1"], "--seed must be an integer in [0, 2**63 - 1]"),
    (["--rounds", "100000000"], "GiB"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("argv, message", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_exits_2_with_one_line(script, argv, message, tmp_path, capsys):
    assert run(script, *argv, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".probe")]


@pytest.mark.parametrize("script, argv, message", [
    ("cnn", ["--min-filters", "0"], "must be at least 1"),
    ("cnn", ["--min-filters", "5", "--max-filters", "3"], "--min-filters (5) is above --max-filters (3)"),
    ("bool", ["--max-width", "0"], "must be at least 1"),
    ("bool", ["--min-width", "9", "--max-width", "2"], "--min-width (9) is above --max-width (2)"),
    ("cnn", ["--temperature", "0"], "--temperature must be in [1e-4, 1e4]"),
    ("cnn", ["--temperature", "nan"], "--temperature must be in [1e-4, 1e4]"),
    ("cnn", ["--temperature", "inf"], "--temperature must be in [1e-4, 1e4]"),
    ("cnn", ["--max-filters", "100000000"], "GiB"),
    ("bool", ["--max-width", "100000000"], "GiB"),
    ("bool", ["--steps", "100000000"], "GiB"),
])
def test_bad_sweep_bounds_exit_2(script, argv, message, tmp_path, capsys):
    assert run(script, *argv, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run("cnn", "--quick", "--out", blocker / "sub") == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_exits_2(tmp_path, capsys):
    assert run("cnn", "--device", "cuda", "--out", tmp_path) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_on_cuda(script, tmp_path):
    assert run(script, "--quick", "--device", "cuda", "--out", tmp_path) == 0
    name = SCRIPTS[script].FIGURE.name
    assert json.loads((tmp_path / f"{name}.json").read_text())["device_used"].startswith("cuda")
    assert report.read_csv(tmp_path / f"{name}.csv")


@background
def as_commands(folder: Path):
    """eval_bool.py --help and eval_cnn.py with a bad flag, as commands: how they ended, and what was left."""
    help_ = subprocess.run([sys.executable, "eval_bool.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    bad = subprocess.run([sys.executable, "eval_cnn.py", "--rounds", "0", "--out", str(folder / "out")], cwd=ROOT,
                         capture_output=True, text=True)
    return help_, bad, list(folder.iterdir())


def test_scripts_run_as_commands(as_commands):
    """The real entry points: --help works; bad input gives one line and status 2, no traceback, nothing
    written (which values are bad, a nan among them, is checked in process: test_bad_input_exits_2_with_one_line,
    test_bad_sweep_bounds_exit_2)."""
    help_, bad, left = as_commands
    assert help_.returncode == 0 and "(default: 50)" in help_.stdout
    assert bad.returncode == 2 and bad.stderr == "eval_cnn.py: error: --rounds must be a positive integer, got 0\n"
    assert bad.stdout == "" and not left


# ----------------------------------------------------------------------------- CSV reading

def write(path, text):
    path.write_text(text)
    return path


HEAD = "model,sweep,params,round,score,diverged\n"


@pytest.mark.parametrize("text, message", [
    ("model,sweep,params,round\nNaive,1,6,0\n", "expected the columns"),
    (HEAD + "Naive,1,6,0,high,0\n", "score a number"),
    (HEAD + "Naive,1,6,0,0.5\n", "expected 6 fields"),
    (HEAD + "Wide,1,6,0,0.5,0\n", "unknown model"),
    (HEAD, "no result rows"),
    ("", "expected the columns"),
    (HEAD + "Naive,1,6,0,inf,0\n", "score must be a number in [0, 1]"),
    (HEAD + "Naive,1,6,0,nan,0\n", "score must be a number in [0, 1]"),
    (HEAD + "Naive,1,6,0,-3,0\n", "score must be a number in [0, 1]"),
    (HEAD + "Naive,1,6,0,7,0\n", "score must be a number in [0, 1]"),
    (HEAD + "Naive,1" + "0" * 400 + ",6,0,0.5,0\n", "sweep and params must be in"),
    (HEAD + "Naive,1" + "0" * 5000 + ",6,0,0.5,0\n", "must be integers"),
    (HEAD + "Naive,1,6,-1,0.5,0\n", "round in [0,"),
    (HEAD + "Naive,1,6,0,0.5,2\n", "diverged must be 0 or 1"),
    (HEAD + "Naive,1,6,0,0.5,0\nNaive,1,6,1,0.25,0\nNaive,1,6,0,0.5,0\n", "a second row for Naive 1 round 0"),
    (HEAD + "Naive,1,6,0,0.5,0\nNaive,1,7,1,0.25,0\n", "two parameter counts"),
    (HEAD + "Naive,1,6,0,0.5,0\nNaive,1,6,1,0.2", "the last line is cut short"),
    (HEAD + "Naive," + "x" * 200_000 + ",6,0,0.5,0\n", "not a CSV of this project"),
], ids=lambda v: v[:60].replace("\n", "|") if isinstance(v, str) else None)
def test_malformed_csv_exits_2(tmp_path, capsys, text, message):
    """(Experiment 2's file: it has the common columns only.)"""
    write(tmp_path / "bool_experiment.csv", text)
    assert run("bool", "--plot-only", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and len(err) < 400
    assert not (tmp_path / "bool_experiment.png").exists()


def test_binary_csv_exits_2(tmp_path, capsys):
    (tmp_path / "cnn_experiment.csv").write_bytes(bytes(range(256)) * 4)
    assert run("cnn", "--plot-only", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert "not a readable text file" in err and err.count("\n") == 1


def test_missing_csv_exits_2(tmp_path, capsys):
    assert run("bool", "--plot-only", "--out", tmp_path) == 2
    assert "no results file" in capsys.readouterr().err


def test_plot_only_from_a_hand_written_csv(tmp_path, capsys):
    """A hand-written CSV is redrawn only beside a record that vouches for it (the script, the figure, the
    settings of the same flags, the CSV's digest) and only if it holds the groups such a run writes; in
    place, the CSV and the record stay as they are (a redraw is not a new run)."""
    flags = ["--rounds", "2", "--max-width", "2", "--plot-only", "--out", tmp_path]
    rows = ["Naive,1,5,0,0.5,0", "Naive,1,5,1,1.0,0", "Naive,2,9,0,0.95,0", "Naive,2,9,1,0.95,0"]
    rows += [f"HyperNetwork,{w},7,{r},0.9,0" for w in (1, 2) for r in (0, 1)] + ["hardcoded,2,7,0,0.9486,0"]
    csv_path = write(tmp_path / "bool_experiment.csv", HEAD + "\n".join(rows) + "\n")
    assert run("bool", *flags) == 2
    assert "record of its run" in capsys.readouterr().err
    settings = dataclasses.replace(eval_bool.PROTOCOL, rounds=2, max_width=2)
    record = write(tmp_path / "bool_experiment.json", json.dumps({
        "script": "eval_bool.py", "figure": "bool_experiment", "settings": dataclasses.asdict(settings),
        "csv_sha256": report.digest(csv_path.read_text())})).read_text()
    assert run("bool", *flags) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["Naive", "1", "5", "0.7500"] and "0.500" in lines[1]
    assert lines[2].split()[:4] == ["Naive", "2", "9", "0.9500"] and "[0.9500, 0.9500]" in lines[2]
    assert (tmp_path / "bool_experiment.png").exists()
    assert (tmp_path / "bool_experiment.json").read_text() == record
    write(csv_path, csv_path.read_text().replace("hardcoded,2,7,0,0.9486,0\n", ""))
    record_path = tmp_path / "bool_experiment.json"
    write(record_path, json.dumps({**json.loads(record), "csv_sha256": report.digest(csv_path.read_text())}))
    assert run("bool", *flags) == 2
    assert "lacks hardcoded 2" in capsys.readouterr().err


# ----------------------------------------------------------------------------- intervals

def test_wilson_against_hand_worked_cases():
    lo, hi = report.wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = report.wilson_ci(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = report.wilson_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)


def test_bootstrap_interval_of_constant_and_of_large_samples():
    assert report.bootstrap_mean_ci(np.full(50, 0.9)) == (pytest.approx(0.9), pytest.approx(0.9))
    sample = np.random.default_rng(1).normal(0.5, 0.1, 2000)
    lo, hi = report.bootstrap_mean_ci(sample)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(len(sample))
    assert lo == pytest.approx(sample.mean() - half, abs=half * 0.15)
    assert hi == pytest.approx(sample.mean() + half, abs=half * 0.15)


def test_summary_solved_share_uses_threshold():
    rows = [report.Row("Naive", 1, 6, i, s) for i, s in enumerate([1.0, 1.0, 0.99, 0.5])]
    (s,) = report.summarize(rows, solved_at=1.0)
    assert s.solved == 0.5 and s.rounds == 4 and s.mean == pytest.approx(3.49 / 4)
    assert s.solved_ci == pytest.approx(report.wilson_ci(2, 4))


def test_difference_interval_paired_and_unpaired():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 400)
    assert report.difference_ci(a + 0.02, a, paired=True) == pytest.approx((0.02, 0.02, 0.02))
    b = rng.normal(0.4, 0.2, 300)
    diff, lo, hi = report.difference_ci(a, b, paired=False)
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo == pytest.approx(diff - 1.96 * se, abs=0.25 * se) and hi == pytest.approx(diff + 1.96 * se, abs=0.25 * se)
    _, plo, phi = report.difference_ci(a, a[::-1], paired=True)        # paired rows, unpaired values: wider than 0
    assert plo < 0 < phi


def test_intervals_from_the_cached_draws_are_those_of_fresh_draws():
    """report.resampled draws each bootstrap's indices once per sample sizes: every interval is the one a
    fresh generator gives (drawn in the same order), whatever was asked before."""
    def fresh_difference(a, b, paired):
        rng = np.random.default_rng(0)
        ia = rng.integers(0, len(a), (report.BOOTSTRAP_RESAMPLES, len(a)))
        ib = ia if paired else rng.integers(0, len(b), (report.BOOTSTRAP_RESAMPLES, len(b)))
        lo, hi = np.quantile(a[ia].mean(1) - b[ib].mean(1), [0.025, 0.975])
        return float(a.mean() - b.mean()), float(lo), float(hi)

    rng = np.random.default_rng(2)
    for n, m in ((40, 40), (40, 25), (25, 40), (40, 40)):
        a, b = rng.random(n), rng.random(m)
        for paired in (True, False) if n == m else (False,):
            assert report.difference_ci(a, b, paired) == fresh_difference(a, b, paired)
        means = a[np.random.default_rng(0).integers(0, n, (report.BOOTSTRAP_RESAMPLES, n))].mean(1)
        assert report.bootstrap_mean_ci(a) == tuple(float(q) for q in np.quantile(means, [0.025, 0.975]))
    with pytest.raises(ValueError):
        report.resampled((40,), report.BOOTSTRAP_RESAMPLES, 0)[0][0, 0] = 1                 # read-only


def test_table_shows_no_interval_for_a_single_fixed_network():
    rows = [report.Row("Naive", 1, 6, r, s) for r, s in enumerate([0.5, 1.0, 1.0])] + [report.Row("hardcoded", 1, 5, 0, 1.0)]
    naive, hard = report.table(report.summarize(rows, 1.0)).splitlines()[1:]
    assert naive.count("[") == 2 and "[" not in hard and hard.split()[:4] == ["hardcoded", "1", "5", "1.0000"]


def test_a_title_wider_than_its_panel_and_a_label_taller_than_it_are_shrunk_to_fit_and_others_left():
    """Two panels side by side: a long title and y-label on the left would run into the right panel and off
    the figure; after fitting each fits its panel, while the right panel's short texts keep their size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig, ((left, right),) = report.canvas(1, 2, (12, 3))
    left.set(title="a title wider than the panel it names, as an ablation's were: 80 characters long",
             ylabel="a label taller than its panel, by far")
    right.set(title="short", ylabel="short")
    sizes = [t.get_fontsize() for t in (left.title, left.yaxis.label, right.title, right.yaxis.label)]
    report.fit_texts(fig)
    renderer = FigureCanvasAgg(fig).get_renderer()
    box = left.get_window_extent(renderer)
    assert left.title.get_window_extent(renderer).width <= box.width + 1
    assert left.yaxis.label.get_window_extent(renderer).height <= box.height + 1
    assert left.title.get_fontsize() < sizes[0] and left.yaxis.label.get_fontsize() < sizes[1]
    assert [right.title.get_fontsize(), right.yaxis.label.get_fontsize()] == sizes[2:]
