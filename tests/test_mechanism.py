"""The mechanism study: thresholds fitted by hand, extraction and rewinding exact, choices made on the
selection set only and, for the init-only search, before any training; nothing branches on which
experiment runs; measurements are declared columns of the networks they describe, every trained row
carries its real divergence; bad flags and bad files stop it first."""
import ast
import contextlib
import dataclasses
import io
import shutil
from pathlib import Path

import pytest
import torch

import cli
import data
import engine
import eval_bool
import eval_cnn
import eval_mechanism as M
import report
from background import background
from models import NaiveBoolNet, NaiveCNN

torch.set_num_threads(1)


def run_study(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(M.arguments(), M.jobs, argv)
    return code, out.getvalue(), err.getvalue()


QUICK = ["--quick", "--rounds", "4", "--steps", "30"]


@background
def mechanism_runs(folder):
    """One quick run of each experiment, shared by every test that reads its files or its notes, then
    `--plot-only` on its files; and a quick cnn run at a learning rate that diverges: {which: (its folder, status,
    stdout, stderr)}."""
    runs = {"quick": (folder / "quick", *run_study([*QUICK, "--out", str(folder / "quick"), "--device", "cpu"]))}
    runs["redrawn"] = (folder / "quick", *run_study([*QUICK, "--plot-only", "--out", str(folder / "quick")]))
    runs["diverged"] = (folder / "diverged",
                        *run_study([*QUICK, "--lr", "1e30", "--experiment", "cnn", "--out", str(folder / "diverged"),
                                    "--device", "cpu"]))
    return runs


@pytest.fixture(scope="module")
def quick(mechanism_runs):
    """The quick run's folder and what it printed."""
    folder, code, printed, err = mechanism_runs["quick"]
    assert code == 0, err
    return folder, printed


def rows_of(folder: Path, name: str) -> list[report.Row]:
    e = M.EXPERIMENTS[name]
    return report.read_csv(folder / f"mechanism_{name}.csv", M.figure(e).models, M.figure(e).columns)


# ----------------------------------------------------------------------------- the parts, by hand

def test_thresholds_fitted_by_hand():
    values = torch.tensor([[0.1, 0.4, 0.35, 0.8], [0.9, 0.2, 0.3, 0.1]])
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    threshold, direction = M.fit_thresholds(values, labels)
    assert direction.tolist() == [1.0, -1.0]
    assert threshold[0].item() == pytest.approx((0.35 + 0.4) / 2)            # 0.1, 0.35 below; 0.4, 0.8 above
    assert threshold[1].item() == pytest.approx((0.2 + 0.3) / 2)             # positives 0.1, 0.2 below
    assert M.accuracy_of(values, labels, threshold, direction).tolist() == [1.0, 1.0]
    noisy = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    threshold, direction = M.fit_thresholds(noisy, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert M.accuracy_of(noisy, torch.tensor([0.0, 1.0, 0.0, 1.0]), threshold, direction).item() == 0.75


def test_the_fast_sort_of_the_thresholds_is_argsorts_bit_for_bit(monkeypatch):
    """sorted_rows (numpy's sort of keys that carry the labels) orders every row as by_argsort does, ties,
    -0.0, infinities and NaN included: rows whose order a tie or NaN leaves open are argsorted themselves.
    The thresholds fitted through it are those fitted through by_argsort."""
    gen = torch.Generator().manual_seed(8)
    values = torch.randn(64, 300, generator=gen)
    values[:16] = torch.randint(-3, 4, (16, 300), generator=gen).float() / 2     # many ties of mixed labels
    values[16, :5] = torch.tensor([0.0, -0.0, 0.0, -0.0, -0.0])
    values[17, 3], values[18, 7], values[19, :2] = float("nan"), float("-inf"), float("inf")
    values[20, 9] = -float("nan")
    labels = (torch.rand(64, 300, generator=gen) < 0.5).float()
    fast, plain = M.sorted_rows(values, labels), M.by_argsort(values, labels)
    for a, b in zip(fast, plain):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))              # bits, -0.0 and NaN alike
    fitted = M.fit_thresholds(values, labels)
    monkeypatch.setattr(M, "sorted_rows", M.by_argsort)
    plain = M.fit_thresholds(values, labels)
    assert all(torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in zip(fitted, plain))


def trained_cnn(n=4, rounds=6, steps=40):
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=rounds, steps=steps)
    gen = torch.Generator().manual_seed(0)
    stack = engine.init_stack([NaiveCNN(n)], rounds, gen)
    with report.bar(steps, "test") as bar:
        start = M.fitted(eval_cnn, s, gen, stack, bar)
    return stack, start, gen


def test_an_extracted_filter_scores_as_the_wide_network_with_every_other_unit_removed():
    stack, _, gen = trained_cnn()
    x, y = data.pattern_validation_set(300, gen)
    picks = torch.tensor([0, 1, 2, 3, 1, 0])
    alone = M.stack_of(NaiveCNN(1), [M.keep_units(stack.params, picks[:, None], M.Filters.axes)])
    removed = {k: v.clone() for k, v in stack.params.items()}
    removed["decision.weight"] *= torch.nn.functional.one_hot(picks, 4).float()[:, None, :]
    pruned = engine.frozen_stack(NaiveCNN(4), removed)
    scorer = eval_cnn.shared_set(x, y)
    assert torch.equal(scorer(alone)[0], scorer(pruned)[0])


def test_rewinding_restores_exactly_the_initial_weights():
    stack, start, _ = trained_cnn()
    picks = torch.tensor([3, 1, 0, 2, 2, 1])
    rewound = M.keep_units(start, picks[:, None], M.Filters.axes)
    for r, k in enumerate(picks.tolist()):
        assert torch.equal(rewound["conv.weight"][r, 0], start["conv.weight"][r, k])
        assert torch.equal(rewound["decision.weight"][r, 0, 0], start["decision.weight"][r, 0, k])
        assert torch.equal(rewound["decision.bias"][r], start["decision.bias"][r])
        assert not torch.equal(rewound["conv.weight"][r, 0], stack.params["conv.weight"][r, k])


def test_an_extracted_pair_scores_as_the_wide_network_with_every_other_unit_removed():
    gen = torch.Generator().manual_seed(1)
    stack = engine.init_stack([NaiveBoolNet(5)], 4, gen)
    pairs = M.top(M.reliance(stack.params), 2)
    effect = stack.params["output.weight"][:, 0].abs() * stack.params["hidden.weight"].norm(dim=-1)
    assert torch.equal(pairs.sort(1).values, effect.topk(2, 1).indices.sort(1).values)
    x, _ = data.and_points((4, 400), gen)
    with torch.no_grad():
        alone = NaiveBoolNet(2).eval().stacked_forward(M.keep_units(stack.params, pairs, M.Pairs.axes), x)
        removed = {k: v.clone() for k, v in stack.params.items()}
        removed["output.weight"] *= torch.zeros(4, 5).scatter_(1, pairs, 1.0)[:, None]
        whole = NaiveBoolNet(5).eval().stacked_forward(removed, x)
    torch.testing.assert_close(alone, whole)


def test_the_choice_of_a_filter_never_looks_at_the_validation_set():
    stack, _, gen = trained_cnn()
    selection = data.pattern_validation_set(200, gen)
    x_val, y_val = data.pattern_validation_set(200, gen)
    w = M.filters(stack.params)
    sel, val = M.filters_alone(w, ((selection[0],), selection[1]), ((x_val,), y_val))
    sel2, val2 = M.filters_alone(w, ((selection[0],), selection[1]), ((x_val,), 1 - y_val))   # labels flipped
    assert torch.equal(sel, sel2) and not torch.equal(val, val2)
    assert torch.equal(M.top(sel, 1), M.top(sel2, 1))


def test_the_init_only_choice_is_made_before_any_training(monkeypatch):
    calls = []
    real_fit, real_choice = eval_cnn.fit, M.Filters.choose_at_init
    monkeypatch.setattr(eval_cnn, "fit", lambda *a, **k: calls.append("train") or real_fit(*a, **k))
    monkeypatch.setattr(M.Filters, "choose_at_init", lambda *a: calls.append("choose") or real_choice(*a))
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=4, steps=10).check()
    anatomy = M.Filters(s, M.FilterChoice(selection=100), torch.Generator().manual_seed(2))
    with report.bar(10, "test") as bar:
        rows = anatomy.own_arms([1, 2, 3], bar)
    assert calls == ["choose", "train"]
    assert {r.model for r in rows} == {M.INIT_CHOICE, M.RESTARTS} and {r.sweep for r in rows} == {1, 2, 3}


def test_each_round_is_scored_on_its_own_validation_set_and_its_candidates_on_the_same():
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=3).check()
    anatomy = M.Filters(s, M.FilterChoice(selection=50), torch.Generator().manual_seed(3))
    for scorer in (anatomy.validation, anatomy.selection):
        (x,), _ = scorer.data(0, 6)                         # rows 0..5 of a stack of 2 groups of 3 rounds
        assert torch.equal(x[0], x[3]) and torch.equal(x[2], x[5]) and not torch.equal(x[0], x[1])


# ----------------------------------------------------------------------------- one interface, no branch

def test_nothing_in_the_study_names_an_experiment():
    tree = ast.parse(Path(M.__file__).read_text())
    names = {e.NAME for e in M.EXPERIMENTS.values()}
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names]
    assert literals == [], "a branch on the experiment's name"
    assert set(M.ANATOMIES) == set(M.EXPERIMENTS) and all(a.experiment.NAME == k for k, a in M.ANATOMIES.items())


@pytest.mark.parametrize("argv, message", [
    (["--max-width", "2"], "--max-width must be at least 3"),
    (["--max-filters", "1"], "--max-filters must be at least 2"),
    (["--selection", "0"], "--selection must be in [1, 100000]"),
    (["--experiment", "bool", "--selection", "5"], "--selection does not apply to --experiment bool"),
    (["--experiment", "cnn", "--max-width", "5"], "--max-width does not apply to --experiment cnn"),
    (["--experiment", "bool", "--min-filters", "2"], "--min-filters does not apply to --experiment bool"),
    (["--min-filters", "0"], "--min-filters must be at least 1"),
    (["--rounds", "nan"], "invalid int value"),
])
def test_bad_flags_exit_2_before_any_training(argv, message, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained before checking the flags"))
    code, _, err = run_study([*argv, "--out", str(tmp_path)])
    assert code == 2 and message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_a_flag_for_one_experiment_applies_to_it_alone_when_both_run():
    args = M.arguments().parse_args(["--selection", "7"])
    chosen = cli.study_settings(args, M.PROTOCOLS, M.OWN)
    assert chosen[eval_cnn.NAME][1].selection == 7 and chosen[eval_bool.NAME][1] == M.PairChoice()


# ----------------------------------------------------------------------------- the quick run's files

def test_quick_run_files_notes_and_replot(quick, mechanism_runs):
    folder, printed = quick
    assert "ticket - control (paired)" in printed and "init-only choice - one Naive(3)" in printed
    for name in M.EXPERIMENTS:
        assert (folder / f"mechanism_{name}.png").stat().st_size > 10_000
        assert {r.model for r in rows_of(folder, name)} == set(M.figure(M.EXPERIMENTS[name]).models)
    _, code, _, err = mechanism_runs["redrawn"]
    assert code == 0, err


def test_measurements_are_declared_columns_and_scores_are_networks_scores(quick):
    folder, _ = quick
    for name, e in M.EXPERIMENTS.items():
        columns = M.figure(e).columns
        assert columns == (*e.TEST_COLUMNS, *M.ANATOMIES[name].columns) and not any(c.key for c in columns)
        rows = rows_of(folder, name)
        assert all(type(r.get("alone")) is float and 0 <= r.get("alone") <= 1 for r in rows)
        assert all(0 <= r.get("test_error") <= 1 for r in rows)
        assert {r.params for r in rows if r.model != M.WIDE} == {e.model(e.PROTOCOL, "Naive", e.SMALL).final_size}
    cnn = rows_of(folder, eval_cnn.NAME)
    assert all(type(r.get("detectors")) is int and 0 <= r.get("detectors") <= (r.sweep if r.model == M.WIDE else 1)
               for r in cnn)
    assert all(-1 <= r.get("cosine") <= 1 for r in cnn)
    assert len({r.get("cosine") for r in cnn if r.model == M.WIDE}) > 1


def test_every_trained_row_carries_its_real_divergence(quick, mechanism_runs):
    folder, _ = quick
    assert not any(r.diverged for name in M.EXPERIMENTS for r in rows_of(folder, name))
    diverged, code, printed, err = mechanism_runs["diverged"]
    assert code == 0, err
    rows = rows_of(diverged, eval_cnn.NAME)
    assert all(r.diverged for r in rows) and {r.model for r in rows} == set(M.figure(eval_cnn).models)
    assert "wide network 3: 4 of 4 rounds diverged" in printed


@pytest.mark.parametrize("edit, message", [
    (lambda header, line: (header.replace(",cosine", ""), line.rsplit(",", 1)[0]), "expected the columns"),
    (lambda header, line: (header, line.rsplit(",", 2)[0] + ",1.5," + line.rsplit(",", 1)[1]), "detectors must be an integer"),
    (lambda header, line: (header, line.rsplit(",", 1)[0] + ",1.5"), "cosine must be in [-1, 1]"),
])
def test_plot_only_refuses_a_csv_whose_declared_columns_are_missing_or_retyped(quick, tmp_path, edit, message):
    folder, _ = quick
    for ext in ("csv", "json"):
        shutil.copy(folder / f"mechanism_cnn.{ext}", tmp_path)
    path = tmp_path / "mechanism_cnn.csv"
    header, *lines = path.read_text().splitlines()
    edited = [edit(header, line) for line in lines]
    path.write_text("\n".join([edited[0][0], *(line for _, line in edited)]) + "\n")
    code, _, err = run_study([*QUICK, "--plot-only", "--experiment", "cnn", "--out", str(tmp_path)])
    assert code == 2 and message in err and err.count("\n") == 1


def test_every_groups_filters_alone_together_are_each_groups_alone():
    """Filters.alone pools all the groups' filters of a round at once (the groups hold the same rounds): each
    group's accuracies are those of its own filters measured alone on the same sets."""
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=6, steps=10).check()
    anatomy = M.Filters(s, M.FilterChoice(selection=50), torch.Generator().manual_seed(3))
    stack = engine.init_stack([NaiveCNN(1), NaiveCNN(3), NaiveCNN(6)], 6, torch.Generator().manual_seed(4))
    together = anatomy.alone(stack, anatomy.validation)
    for i, g in enumerate(stack.groups):
        w = M.filters(stack.group_params(g))
        own = M.filters_alone(w, anatomy.selection.data(0, 6), anatomy.validation.data(0, 6))
        selected, validated = (on.alone[i] for on in together)
        assert selected.shape == (6, g.template.conv.out_channels)
        assert torch.allclose(selected, own[0]) and torch.allclose(validated, own[1])


@pytest.mark.parametrize("sizes", [(1, 2, 5, 7), (1, 1, 1)])           # all filters pooled by bmm, or in blocks
def test_the_networks_scored_from_their_filters_alone_responses_are_scored_as_engine_evaluate_scores_them(sizes):
    """Filters.alone scores every network from the pooled responses its filters alone were measured on: the
    same scores and diverged flags, bit for bit, as engine.evaluate gives on the selection and validation sets
    (40 rounds: a whole chunk and a part)."""
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=40).check()
    anatomy = M.Filters(s, M.FilterChoice(selection=60), torch.Generator().manual_seed(6))
    stack = engine.init_stack([NaiveCNN(n) for n in sizes], 40, torch.Generator().manual_seed(7))
    with torch.no_grad():
        stack.params["decision.bias"][45] = float("nan")                # one diverged round of group 2
    on_selection, on_validation = anatomy.alone(stack, anatomy.validation)
    for on, scorer in ((on_selection, anatomy.selection), (on_validation, anatomy.validation)):
        expected = scorer(stack)
        assert torch.equal(on.scored[0], expected[0]) and torch.equal(on.scored[1], expected[1])
    assert on_validation.scored[1].sum() == 1 and on_validation.scored[1][45]
