"""Experiment 1 generalised to any pattern, the scaling study, and experiment 2's bounded training data."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import cli
import data
import engine
import eval_bool
import eval_cnn
import eval_scaling as S
import report
from models import hardcoded_cnn

PATTERNS = ["1101", "1", "11", "101", "10001", "1111", "11000000", "0110", "1011011"]


@pytest.mark.parametrize("text", PATTERNS)
def test_the_pattern_is_planted_exactly_and_nowhere_else(text):
    pattern = data.Pattern(text, 40)
    x, y = data.pattern_pairs((2000,), torch.Generator().manual_seed(1), pattern)
    assert x.shape == (2000, 2, 1, 40) and torch.equal(y[0], torch.tensor([0.0, 1.0]))
    neg, pos = x[:, 0, 0], x[:, 1, 0]
    assert (neg.abs() < 0.5).all(), "negatives hold noise only"
    ones = pos == 1.0
    assert (ones | (pos.abs() < 0.5)).all() and torch.equal(ones.sum(1), torch.full((2000,), text.count("1")))
    first = ones.float().argmax(1) - text.index("1")                    # the start of each planted window
    assert first.min() == 0 and first.max() == pattern.last_start == 40 - len(text) - 1
    for seq, start in zip(ones[:200], first[:200]):
        assert seq.nonzero()[:, 0].tolist() == [int(start) + o for o in pattern.offsets]


def test_the_protocol_pattern_is_the_default_and_starts_at_0_to_59():
    assert data.PROTOCOL_PATTERN == data.Pattern("1101", 64) and data.PROTOCOL_PATTERN.last_start == 59
    a = data.pattern_pairs((50,), torch.Generator().manual_seed(3))
    b = data.pattern_pairs((50,), torch.Generator().manual_seed(3), data.Pattern("1101", 64))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_the_default_pattern_reproduces_the_faithful_run(tmp_path):
    argv = ["--quick", "--rounds", 3, "--steps", 20]
    assert cli.main(eval_cnn.arguments(), eval_cnn.jobs, [str(a) for a in [*argv, "--out", tmp_path / "a"]]) == 0
    assert cli.main(eval_cnn.arguments(), eval_cnn.jobs, [str(a) for a in [*argv, "--pattern", "1101", "--seq-len", 64,
                                                                         "--out", tmp_path / "b"]]) == 0
    assert (tmp_path / "a" / "cnn_experiment.csv").read_bytes() == (tmp_path / "b" / "cnn_experiment.csv").read_bytes()


@pytest.mark.parametrize("text", PATTERNS)
def test_the_hardcoded_network_scores_100_percent_on_any_pattern(text):
    pattern = data.Pattern(text, 48)
    x, y = data.pattern_validation_set(5000, torch.Generator().manual_seed(2), pattern)
    with torch.no_grad():
        logits = hardcoded_cnn(pattern)(x)[:, 0]
    assert engine.accuracy(logits[None], y).item() == 1.0


def test_the_hardcoded_bias_sits_halfway_to_the_best_non_match():
    assert data.Pattern("1101").bias() == -2.5          # match 3; a shifted window overlaps one 1.0: below 2
    assert data.Pattern("1111").bias() == -(4 + 3.5) / 2
    assert data.Pattern("1").bias() == -(1 + 0.5) / 2


@pytest.mark.parametrize("argv, message", [
    (["--pattern", ""], "a non-empty string of 1 and 0"),
    (["--pattern", "12a"], "a non-empty string of 1 and 0"),
    (["--pattern", "000"], "needs at least one 1"),
    (["--pattern", "1101", "--seq-len", "4"], "must be shorter than the sequences"),
    (["--pattern", "1" * 70], "must be shorter than the sequences"),
    (["--seq-len", "0"], "--seq-len must be in [1, 4096]"),
])
def test_bad_patterns_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert cli.main(eval_cnn.arguments(), eval_cnn.jobs, [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- the scaling study

def test_n50_interpolates_in_log_n_and_says_when_it_is_not_reached():
    assert S.n50({1: 0.2, 2: 0.4, 4: 0.6}) == pytest.approx(2 ** 1.5)
    assert S.n50({1: 0.6, 2: 0.9}) == 1.0
    assert math.isinf(S.n50({1: 0.1, 2: 0.3, 4: 0.2}))
    assert S.independent(0.25, 2) == pytest.approx(1 - 0.75 ** 2)
    assert S.independent(1 - 0.5 ** (1 / 3), S.independent_n50(1 - 0.5 ** (1 / 3))) == pytest.approx(0.5)


def test_n50_interval_covers_and_follows_the_data():
    rng = np.random.default_rng(0)
    solved = {n: rng.random(400) < 1 - 0.8 ** n for n in (1, 2, 4, 8)}
    mid, lo, hi = S.n50_interval(solved)
    assert lo <= mid <= hi and lo < S.independent_n50(0.2) < hi


def test_scaling_quick_run_flags_and_files(tmp_path, capsys):
    def run(*argv):
        return cli.main(S.arguments(), S.jobs, [str(a) for a in argv])
    assert run("--quick", "--rounds", 6, "--steps", 30, "--out", tmp_path) == 0
    printed = capsys.readouterr().out
    assert "pattern 11: p" in printed and "pattern 110: p" in printed and "n50" in printed
    rows = report.read_csv(tmp_path / "scaling_cnn.csv", ("pattern 11", "pattern 110"))
    assert {(r.model, r.sweep) for r in rows} == {(m, n) for m in ("pattern 11", "pattern 110") for n in (1, 2, 4)}
    assert {r.params for r in rows if r.sweep == 4 and r.model == "pattern 110"} == {4 * 3 + 5}
    assert (tmp_path / "scaling_cnn.png").stat().st_size > 10_000
    assert run("--plot-only", "--out", tmp_path) == 0
    assert run("--family", "ones", "--quick", "--rounds", 2, "--steps", 5, "--out", tmp_path / "ones") == 0
    assert {r.model for r in report.read_csv(tmp_path / "ones" / "scaling_cnn.csv", ("pattern 11", "pattern 111"))} == {
        "pattern 11", "pattern 111"}
    capsys.readouterr()
    assert run("--max-length", "70", "--out", tmp_path / "bad") == 2
    assert "--max-length must be in [1, 63]" in capsys.readouterr().err
    assert run("--max-length", "9", "--seq-len", "9", "--out", tmp_path / "bad") == 2
    assert "must be below --seq-len" in capsys.readouterr().err


def test_the_scaling_stacks_train_group_by_group():
    s = dataclasses.replace(S.PROTOCOL, rounds=2)
    stack = engine.init_stack([eval_cnn.model(s, "Naive", n) for n in s.counts()], 2, torch.Generator())
    assert s.counts() == [1, 2, 4, 8, 16, 32, 64] and engine.per_group(stack) and engine.padding_waste(stack) > 3


# ----------------------------------------------------------------------------- bounded training data

def test_training_data_is_drawn_in_bounded_blocks(monkeypatch):
    sizes = []
    real = eval_bool.training_data
    monkeypatch.setattr(eval_bool, "training_data", lambda rounds, steps, gen: sizes.append(rounds) or real(rounds, steps, gen))
    monkeypatch.setattr(eval_bool, "DATA_BLOCK_BYTES", 40 * 16 * 2 * 4 * 7)      # 7 rounds of 40 steps
    s = dataclasses.replace(eval_bool.PROTOCOL, rounds=5, steps=40, max_width=3)
    with report.bar(s.steps, "test") as bar:
        eval_bool.train(s, torch.Generator().manual_seed(0), [eval_bool.model(s, "Naive", w) for w in s.sizes()], bar)
    assert eval_bool.block_rounds(40) == 7 and sizes == [7, 7, 1]


def test_a_block_never_exceeds_its_budget_and_the_protocol_fits_one():
    for steps in (1, 10, 500, 2000, 10 ** 6):
        rounds = eval_bool.block_rounds(steps)
        assert rounds >= 1 and (rounds == 1 or rounds * steps * eval_bool.BATCH * 2 * 4 <= eval_bool.DATA_BLOCK_BYTES)
    protocol = eval_bool.PROTOCOL
    assert eval_bool.block_rounds(protocol.steps) >= protocol.rounds * len(protocol.sizes()), \
        "the protocol's stack must be drawn at once, as the committed results were"
