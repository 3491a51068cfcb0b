"""The mechanism study: thresholds fitted by hand, extraction and rewinding exact, choices made on the
selection set only and, for the init-only search, before any training; bad flags stop it first."""
import dataclasses

import pytest
import torch

import cli
import data
import engine
import eval_cnn
import eval_mechanism as M
import report
from models import NaiveBoolNet, NaiveCNN


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


def trained_cnn(n=4, rounds=6, steps=40):
    s = dataclasses.replace(eval_cnn.PROTOCOL, rounds=rounds, steps=steps)
    gen = torch.Generator().manual_seed(0)
    stack = engine.init_stack([NaiveCNN(n)], rounds, gen)
    start = {k: v.clone() for k, v in stack.params.items()}
    with report.bar(steps, "test") as bar:
        eval_cnn.fit(s, gen, stack, bar)
    return stack, start, gen


def test_an_extracted_filter_scores_as_the_wide_network_with_every_other_unit_removed():
    stack, _, gen = trained_cnn()
    x, y = data.pattern_validation_set(300, gen)
    picks = torch.tensor([0, 1, 2, 3, 1, 0])
    alone = engine.trainable_stack(NaiveCNN(1), M.rewound_filters(stack.params, stack, [picks]))
    removed = {k: v.clone() for k, v in stack.params.items()}
    keep = torch.nn.functional.one_hot(picks, 4).float()
    removed["decision.weight"] *= keep[:, None, :]
    pruned = engine.frozen_stack(NaiveCNN(4), removed)
    data_ = eval_cnn.shared_set(x, y)
    a = data_(alone)[0]
    b = data_(pruned)[0]
    assert torch.equal(a, b)


def test_rewinding_restores_exactly_the_initial_weights():
    stack, start, _ = trained_cnn()
    picks = torch.tensor([3, 1, 0, 2, 2, 1])
    rewound = M.rewound_filters(start, stack, [picks])
    for r, k in enumerate(picks.tolist()):
        assert torch.equal(rewound["conv.weight"][r, 0], start["conv.weight"][r, k])
        assert torch.equal(rewound["decision.weight"][r, 0, 0], start["decision.weight"][r, 0, k])
        assert torch.equal(rewound["decision.bias"][r], start["decision.bias"][r])
        assert not torch.equal(rewound["conv.weight"][r, 0], stack.params["conv.weight"][r, k])


def test_an_extracted_pair_scores_as_the_wide_network_with_every_other_unit_removed():
    gen = torch.Generator().manual_seed(1)
    stack = engine.init_stack([NaiveBoolNet(5)], 4, gen)
    pairs = M.pair_of(stack.params["hidden.weight"], stack.params["output.weight"][:, 0], 5)
    effect = stack.params["output.weight"][:, 0].abs() * stack.params["hidden.weight"].norm(dim=-1)
    assert torch.equal(pairs.sort(1).values, effect.topk(2, 1).indices.sort(1).values)
    x, y = data.and_points((4, 400), gen)
    alone = M.two_layer(M.pair_params(stack.params, pairs), x)
    removed = {k: v.clone() for k, v in stack.params.items()}
    removed["output.weight"] *= torch.zeros(4, 5).scatter_(1, pairs, 1.0)[:, None]
    with torch.no_grad():
        whole = NaiveBoolNet(5).eval().stacked_forward(removed, x)
    torch.testing.assert_close(alone, whole)


def test_the_choice_of_a_filter_never_looks_at_the_validation_set():
    stack, _, gen = trained_cnn()
    x_sel, y_sel = data.pattern_validation_set(200, gen)
    x_val, y_val = data.pattern_validation_set(200, gen)
    w = stack.params["conv.weight"].flatten(1, 2)
    sel, val = M.filters_alone(w, x_sel, y_sel, x_val, y_val)
    sel2, val2 = M.filters_alone(w, x_sel, y_sel, x_val, 1 - y_val)        # the validation labels flipped
    assert torch.equal(sel, sel2) and not torch.equal(val, val2)
    assert torch.equal(sel.argmax(1), sel2.argmax(1))


def test_the_init_only_choice_is_made_before_any_training(monkeypatch):
    calls = []
    real_fit, real_thresholds = eval_cnn.fit, M.fit_thresholds
    monkeypatch.setattr(eval_cnn, "fit", lambda *a, **k: calls.append("train") or real_fit(*a, **k))
    monkeypatch.setattr(M, "fit_thresholds", lambda *a: calls.append("choose") or real_thresholds(*a))
    s = dataclasses.replace(M.PROTOCOLS["cnn"], rounds=4, steps=10).check()
    gen = torch.Generator().manual_seed(2)
    x, y = data.pattern_validation_set(100, gen)
    with report.bar(10, "test") as bar:
        rows = M.init_search(s, gen, 3, x, y, eval_cnn.shared_set(x, y), bar)
    assert calls == ["choose", "train"]
    assert {r.model for r in rows} == {M.INIT_CHOICE, M.RESTARTS} and {r.sweep for r in rows} == {1, 2, 3}


@pytest.mark.parametrize("argv, message", [
    (["--max-width", "2"], "--max-width must be at least 3"),
    (["--selection", "0"], "--selection must be a positive integer"),
    (["--min-filters", "0"], "--min-filters must be at least 1"),
    (["--rounds", "nan"], "invalid int value"),
])
def test_bad_flags_exit_2_before_any_training(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained before checking the flags"))
    assert cli.main(M.arguments(), M.jobs, [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_quick_run_files_and_notes(tmp_path, capsys):
    assert cli.main(M.arguments(), M.jobs, ["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "ticket - control (paired)" in printed and "init-only choice - one Naive(3)" in printed
    for e in ("cnn", "bool"):
        assert (tmp_path / f"mechanism_{e}.png").stat().st_size > 10_000
    rows = report.read_csv(tmp_path / "mechanism_cnn.csv", M.MODELS["cnn"])
    assert {r.model for r in rows} == set(M.MODELS["cnn"])
    assert cli.main(M.arguments(), M.jobs, ["--plot-only", "--out", str(tmp_path)]) == 0
