"""The exploration study: selection on its own set, budgets, best-of-1 = the plain model, selection
noise and the oracle bound, files and flags."""
import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from tqdm import tqdm

import cli
import data
import engine
import eval_bool
import eval_cnn
import eval_exploration as X
import report
from hypernet import Z_DIM, HyperBoolNet, HyperCNN
from models import NaiveBoolNet, NaiveCNN


def settings(experiment, **changes):
    return dataclasses.replace(X.PROTOCOLS[experiment], **changes).check()


def main(*argv):
    return cli.main(X.arguments(), X.jobs, [str(a) for a in argv])


def test_best_of_follows_the_selection_scores_and_breaks_ties_early():
    selection = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.7, 0.7]])
    validation = torch.tensor([[0.8, 0.2, 0.95], [0.3, 0.6, 0.9]])
    assert X.best_of(selection, validation, 1).tolist() == pytest.approx([0.8, 0.3])
    assert X.best_of(selection, validation, 2).tolist() == pytest.approx([0.2, 0.3])
    assert X.best_of(selection, validation, 3).tolist() == pytest.approx([0.2, 0.3])


def test_powers_of_two():
    assert X.powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64]
    assert X.powers_of_two(6) == [1, 2, 4, 6] and X.powers_of_two(1) == [1]


def test_selection_never_uses_the_validation_set():
    """Select on the validation sequences with every label flipped: a selection that used the true
    labels would keep each round's best network; one on the selection set keeps its worst."""
    s = settings("cnn", rounds=12, steps=30, restarts=4, samples=8)
    x, y = data.pattern_validation_set(100, torch.Generator().manual_seed(5))
    sets = {"selection": eval_cnn.shared_set(x, 1 - y), "validation": eval_cnn.shared_set(x, y)}
    gen = torch.Generator().manual_seed(6)
    with tqdm(disable=True) as bar:
        stack, counts = X.train_candidates("cnn", s, gen, bar)
        pools = {n: X.by_family(X.scored(stack, s.rounds, d, engine.accuracy, True), counts) for n, d in sets.items()}
        generated, _ = X.hypotheses("cnn", s, gen, bar, sets, engine.accuracy, True)
    draw = lambda size: sets["selection"]
    rows = X.explore("cnn", s, torch.Generator().manual_seed(6), sets, draw, engine.accuracy, True)["exploration_cnn"]
    scores = lambda model, k: torch.tensor([r.score for r in rows if r.model == model and r.sweep == k])
    for family in counts:
        sel, val = pools["selection"][family].scores, pools["validation"][family].scores
        torch.testing.assert_close(sel, 1 - val)
        assert (val.max(1).values > val.min(1).values).any(), "candidates must differ, or the test proves nothing"
        for k in range(1, sel.shape[1] + 1):
            torch.testing.assert_close(scores(f"best of k {family}(1)", k), val[:, :k].min(1).values)
    val = generated["validation"].scores
    for k in X.powers_of_two(s.samples):
        torch.testing.assert_close(scores(X.SEEDS, k), val[:, 1:k + 1].min(1).values)
    torch.testing.assert_close(scores(X.ZERO, 1), val[:, 0])


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)
    return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("experiment", ["cnn", "bool"])
def test_best_of_one_has_the_plain_models_score_distribution(experiment):
    """Best of 1 is just an independently trained small network: its scores must follow the law of
    the faithful sweep's scores of that network (two-sample Kolmogorov-Smirnov, alpha = 0.001)."""
    rounds = 300
    gen = torch.Generator().manual_seed(7)
    with tqdm(disable=True) as bar:
        if experiment == "cnn":
            s = settings("cnn", rounds=rounds, steps=60, restarts=1, samples=1, min_filters=1, max_filters=1)
            x, y = data.pattern_validation_set(500, gen)
            plain = np.array([r.score for r in eval_cnn.sweep(s, gen, x, y, families=("Naive",))])
            sets = eval_cnn.shared_set(*data.pattern_validation_set(200, gen)), eval_cnn.shared_set(x, y)
            score, shared = engine.accuracy, True
        else:
            s = settings("bool", rounds=rounds, steps=60, restarts=1, samples=1, min_width=2, max_width=2)
            plain = np.array([r.score for r in eval_bool.sweep(s, gen, families=("Naive",))])
            sets = (X.per_round(*data.and_points((rounds, 500), gen)),
                    X.per_round(*data.and_points((rounds, eval_bool.EVAL_POINTS), gen)))
            score, shared = engine.macro_f1, False
        stack, counts = X.train_candidates(experiment, s, gen, bar)
    sel, val = (X.by_family(X.scored(stack, rounds, d, score, shared), counts)["Naive"].scores for d in sets)
    best = X.best_of(sel, val, 1).numpy()
    critical = 1.95 * np.sqrt(2 / rounds)                   # alpha = 0.001
    assert ks_statistic(best, plain) < critical
    assert ks_statistic(np.maximum(best, np.roll(plain, 1)), plain) > critical, "the test must tell a best of 2 apart"


def test_stacked_generate_matches_generate():
    gen = torch.Generator().manual_seed(8)
    for hyper, size in ((HyperCNN(), 5), (HyperBoolNet(), 7)):
        stack = engine.init_stack([hyper], 4, gen)
        z = data.latents((4,), gen, Z_DIM)
        generated = hyper.stacked_generate(stack.params, z)
        for r in range(4):
            alone = stack.module(r).generate(z[r])
            assert alone.final_size == size
            for name, p in alone.named_parameters():
                torch.testing.assert_close(generated[name][r], p, msg=name)


def test_generated_networks_at_z0_score_as_the_hypernetwork_at_z0():
    gen = torch.Generator().manual_seed(9)
    hyper = HyperCNN()
    stack = engine.init_stack([hyper], 6, gen)
    x, y = data.pattern_validation_set(300, gen)
    own = eval_cnn.shared_set(x, y)(stack)
    at_zero = hyper.stacked_generate(stack.params, torch.zeros(6, Z_DIM))
    generated = engine.frozen_stack(hyper.generate(torch.zeros(Z_DIM)), at_zero)
    torch.testing.assert_close(eval_cnn.shared_set(x, y)(generated), own)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import io
    from contextlib import redirect_stdout
    out = tmp_path_factory.mktemp("exploration")
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main("--quick", "--out", out, "--device", "cpu") == 0
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def read_rows(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_quick_run_writes_valid_files(quick_run):
    for experiment in ("cnn", "bool"):
        fig = X.figure(experiment)
        png = (quick_run / f"{fig.name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        header, rows = read_rows(quick_run / f"{fig.name}.csv")
        assert tuple(header) == report.COLUMNS
        assert {r[0] for r in rows} == set(fig.models)
        assert all(0.0 <= float(r[4]) <= 1.0 for r in rows)
        recorded = json.loads((quick_run / f"{fig.name}.json").read_text())
        assert recorded["settings"]["rounds"] == 10 and recorded["quick"] is True and recorded["seed"] == 0
        assert recorded["settings"]["restarts"] == 3 and recorded["settings"]["samples"] == 4
    assert not [p for p in quick_run.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert main("--plot-only", "--out", quick_run) == 0


def test_printed_comparisons(quick_run):
    printed = (quick_run / "stdout.txt").read_text()
    assert "wide Naive(3) [16] - best of 3 Naive(1) [18]: mean" in printed
    assert "wide Naive(3) [16] - best of 9 RandomConv(1) [18]: mean" in printed
    assert "HyperNetwork, best of 4 latents [33] - HyperNetwork, z = 0 [33] (paired): mean" in printed
    assert "best of 3 Naive(2) [27] - HyperNetwork, best of 4 latents [43]: mean" in printed
    assert "Naive, selection 1000: wide - restarts: mean" in printed and "Naive: wide - oracle bound: mean" in printed
    assert "Naive, selection 50000: wide - restarts: mean" in printed and "RandomConv: wide - oracle bound" in printed


def test_comparisons_from_a_csv_without_some_models():
    rows = [report.Row("wide Naive(n)", 1, 6, r, 0.5 + r / 10) for r in range(3)]
    text = X.comparisons("cnn")(rows, 1.0)
    assert text.count("\n") == 0 and text.startswith("differences")


def test_budgets_and_parameter_counts(quick_run):
    """Trained parameters: Naive(n) 5n + 1, Naive(w) 4w + 1, k Naive(1) 6k, k RandomConv(1) 2k,
    k Naive(2) 9k; the hypernetworks count their generators (33 and 43 weights)."""
    assert NaiveCNN(1).trained_params == 6 and NaiveCNN(1, frozen_conv=True).trained_params == 2
    assert NaiveBoolNet(2).trained_params == 9
    assert HyperCNN().trained_params == 33 and HyperBoolNet().trained_params == 43
    expected = {
        "cnn": {"wide Naive(n)": lambda n: 5 * n + 1, "best of k Naive(1)": lambda k: 6 * k,
                "best of k RandomConv(1)": lambda k: 2 * k, X.ZERO: lambda k: 33, X.SEEDS: lambda k: 33},
        "bool": {"wide Naive(w)": lambda w: 4 * w + 1, "best of k Naive(2)": lambda k: 9 * k,
                 X.ZERO: lambda k: 43, X.SEEDS: lambda k: 43},
    }
    sweeps = {"cnn": {"best of k Naive(1)": [1, 2, 3], "best of k RandomConv(1)": list(range(1, 10))},
              "bool": {"best of k Naive(2)": [1, 2, 3]}}
    for experiment, budget in expected.items():
        _, rows = read_rows(quick_run / f"exploration_{experiment}.csv")
        for model, sweep, params, *_ in rows:
            assert int(params) == budget[model](int(sweep)), (model, sweep, params)
        for model, ks in {**sweeps[experiment], X.SEEDS: [1, 2, 4]}.items():
            assert sorted({int(r[1]) for r in rows if r[0] == model}) == ks, model
            assert all(sum(1 for r in rows if r[0] == model and int(r[1]) == k) == 10 for k in ks)


@pytest.mark.parametrize("argv, message", [
    (["--restarts", "0"], "--restarts must be a positive integer"),
    (["--samples", "-2"], "--samples must be a positive integer"),
    (["--selection", "0"], "--selection must be a positive integer"),
    (["--rounds", "0"], "--rounds must be a positive integer"),
    (["--samples", "x"], "invalid int value"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert main(*argv, "--quick", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_quick_run_on_cuda(tmp_path):
    assert main("--quick", "--rounds", "4", "--out", tmp_path, "--device", "cuda") == 0
    assert json.loads((tmp_path / "exploration_cnn.json").read_text())["device_used"].startswith("cuda")


def test_help_names_each_experiments_defaults():
    text = " ".join(X.arguments().format_help().split())
    assert "(default: 500 (cnn), 50 (bool))" in text and "(default: 6 (cnn), 10 (bool))" in text
    assert "(default: 200 (cnn), 500 (bool))" in text


# ----------------------------------------------------------------------------- selection noise

def test_oracle_bound_is_at_least_any_selection_and_a_validation_selection_gives_it():
    gen = torch.Generator().manual_seed(11)
    validation = torch.rand(40, 6, generator=gen)
    for k in range(1, 7):
        bound = X.best_of(validation, validation, k)
        torch.testing.assert_close(bound, validation[:, :k].max(1).values)
        for _ in range(5):
            assert (bound >= X.best_of(torch.rand(40, 6, generator=gen), validation, k)).all()


def test_selection_rows_from_the_same_candidates(quick_run):
    """Per round, the oracle bound is the same at every selection size, at least the selected candidate
    at every size, and at least every best-of-k of the exploration figure (the same candidates); at the
    default size the selected candidate is the main figure's best of the largest k."""
    for experiment in ("cnn", "bool"):
        rows = report.read_csv(quick_run / f"exploration_selection_{experiment}.csv", X.selection_figure(experiment).models)
        explored = report.read_csv(quick_run / f"exploration_{experiment}.csv", X.figure(experiment).models)
        by = {(r.model, r.sweep, r.round): r.score for r in rows}
        sizes = [f * X.PROTOCOLS[experiment].selection for f in X.SELECTION_SCALE[experiment]]
        for family in X.RESTARTED[experiment]:
            chosen, bound = f"best of k {family}({X.SMALL[experiment]})", X.oracle(family, X.SMALL[experiment])
            for rnd in range(10):
                assert len({by[(bound, size, rnd)] for size in sizes}) == 1
                assert all(by[(bound, sizes[0], rnd)] >= by[(chosen, size, rnd)] for size in sizes)
                assert all(by[(bound, sizes[0], rnd)] >= r.score for r in explored if r.model == chosen and r.round == rnd)
            top = max(r.sweep for r in explored if r.model == chosen)
            default = {r.round: r.score for r in explored if r.model == chosen and r.sweep == top}
            assert all(by[(chosen, sizes[0], rnd)] == default[rnd] for rnd in range(10))


def test_larger_selection_sets_never_retrain(monkeypatch):
    """The selection-noise figure scores the trained stack again: training runs once per stack."""
    calls = []
    real = engine.train
    monkeypatch.setattr(engine, "train", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = settings("bool", rounds=3, steps=20, restarts=2, samples=2, min_width=2, max_width=3)
    X.run_bool(s, torch.Generator().manual_seed(0))
    assert len(calls) == 3                  # the wide sweep (Naive), the candidates, the hypernetwork
