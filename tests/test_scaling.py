"""Experiment 1 generalised to any pattern, the scaling study (patterns every filter can see, the law,
n50, detectors, budgets as checkpoints, flags), and experiment 2's bounded training data."""
import dataclasses
import io
import json
import math
from contextlib import redirect_stdout

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
from background import background
from models import NaiveCNN, _conv_per_round, _max_conv_per_round, hardcoded_cnn

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


def test_the_default_pattern_reproduces_the_faithful_run(quick_runs, tmp_path):
    """The protocol's pattern given as flags writes the CSV of the faithful quick run (conftest's, no flags)."""
    folder, *_ = quick_runs["cnn"]
    argv = ["--quick", "--pattern", "1101", "--seq-len", 64, "--out", tmp_path, "--device", "cpu"]
    assert cli.main(eval_cnn.arguments(), eval_cnn.jobs, [str(a) for a in argv]) == 0
    assert (tmp_path / "cnn_experiment.csv").read_bytes() == (folder / "cnn_experiment.csv").read_bytes()


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


def test_per_round_max_pooling_without_autograd_is_the_max_of_the_correlation():
    gen = torch.Generator().manual_seed(0)
    x, w = torch.rand(3, 50, 40, generator=gen) - 0.5, torch.randn(3, 9, 5, generator=gen)
    assert torch.allclose(_max_conv_per_round(x, w), _conv_per_round(x, w).amax(-1), atol=1e-5)


# ----------------------------------------------------------------------------- the scaling study: patterns

def default_family() -> str:
    return S.PROTOCOL.families()[0]


@pytest.mark.parametrize("length", range(S.SHORTEST["inside"], 9))
def test_the_default_family_sits_where_an_unpadded_filter_sees_every_start(length):
    text = S.FAMILIES[default_family()](length)
    pattern = data.Pattern(text, 64)
    assert text[0] == text[-1] == "1" and len(text) == length
    assert all(0 <= start and start + length <= 64 for start in range(pattern.last_start + 1))
    x, _, start = data.stratified_test_set(3, torch.Generator().manual_seed(length), pattern)
    with torch.no_grad():
        logits = hardcoded_cnn(pattern)(x)[:, 0][None]
    missed, false_pos = data.misses_by_start(logits, start, pattern.last_start + 1)
    assert missed.sum() == 0 and false_pos.sum() == 0


def test_the_families_as_documented():
    assert [S.FAMILIES["inside"](k) for k in (3, 4, 5)] == ["101", "1001", "10001"]
    assert [S.FAMILIES["three"](k) for k in (3, 4, 5, 6, 8)] == ["111", "1101", "10101", "101001", "10010001"]
    assert [S.FAMILIES["tail"](k) for k in (2, 4)] == ["11", "1100"]
    assert S.family_of("1001") == "inside" and S.family_of("1101") == "three" and S.family_of("1100") == "tail"


def shifted_detector_stack(text: str, shift: int, rounds: int = 2) -> engine.Stack:
    """Naive(1) whose filter holds the pattern's leading 11 at taps shift, shift + 1; bias between a window
    holding both 1.0s (2) and one holding at most one (below 1.5)."""
    kernel = torch.zeros(len(text))
    kernel[shift:shift + 2] = 1.0
    params = {"conv.weight": kernel.expand(rounds, 1, 1, len(text)).clone(),
              "decision.weight": torch.ones(rounds, 1, 1), "decision.bias": torch.full((rounds, 1), -1.75)}
    return engine.frozen_stack(NaiveCNN(1, kernel_size=len(text)), params)


def test_false_negatives_by_start_on_a_network_that_misses_position_0():
    s = dataclasses.replace(S.BASE, pattern="1100")
    stack = shifted_detector_stack("1100", 1)
    measured = eval_cnn.test_set(s, torch.Generator().manual_seed(0))(stack)
    assert [dict(m)["missed_starts"] for m in measured] == ["0", "0"]
    rows = report.rows_of(stack, [("Naive", 1)], (torch.zeros(2), torch.zeros(2, dtype=torch.bool)), measured=measured)
    assert S.missed_by_start(rows) == {0: 2}
    aligned = eval_cnn.test_set(s, torch.Generator().manual_seed(0))(shifted_detector_stack("1100", 0))
    assert [dict(m)["missed_starts"] for m in aligned] == ["", ""]
    inside = dataclasses.replace(S.BASE, pattern="1001")                 # a single end tap sees every start
    one_tap = shifted_detector_stack("1001", 0)
    one_tap.params["conv.weight"][:, 0, 0, 1] = 0.0
    one_tap.params["decision.bias"][:] = -0.75
    assert [dict(m)["missed_starts"] for m in eval_cnn.test_set(inside, torch.Generator())(one_tap)] == ["", ""]


# ----------------------------------------------------------------------------- the law, n50, detectors

def test_n50_by_hand():
    assert S.n50({1: 0.2, 2: 0.4, 4: 0.6}) == pytest.approx(2 ** 1.5)       # halfway between 2 and 4 in log n
    assert S.n50({1: 0.6, 2: 0.9}) == 1.0
    assert S.n50({1: 0.1, 2: 0.3, 4: 0.5}) == 4.0
    assert math.isinf(S.n50({1: 0.1, 2: 0.3, 4: 0.2}))
    assert S.independent_n50(0.5) == 1.0 and math.isinf(S.independent_n50(0.0))
    assert S.independent(1 - 0.5 ** (1 / 3), S.independent_n50(1 - 0.5 ** (1 / 3))) == pytest.approx(0.5)


def test_n50_interval_covers_and_follows_the_data():
    rng = np.random.default_rng(0)
    solved = {n: rng.random(400) < 1 - 0.8 ** n for n in (1, 2, 4, 8)}
    mid, lo, hi = S.n50_interval(solved)
    assert lo <= mid <= hi and lo < S.independent_n50(0.2) < hi


@pytest.mark.parametrize("block", [S.RESAMPLE_BLOCK, 300])
def test_n50_interval_draws_the_rounds_of_one_count_after_another(monkeypatch, block):
    """Drawn many resamples at once (three at a time when the block is made small), the bootstrap gives the
    numbers of drawing each resample of each count in turn, counts of unequal rounds included (drawn count by
    count, all resamples of one count first, the interval would differ here)."""
    rng = np.random.default_rng(1)
    solved = {n: rng.random(rounds) < 1 - 0.8 ** n for n, rounds in ((1, 31), (2, 23), (4, 40))}
    draw = np.random.default_rng(0)
    resampled = [S.n50({n: float(v[draw.integers(0, len(v), len(v))].mean()) for n, v in solved.items()})
                 for _ in range(S.RESAMPLES)]
    lo, hi = np.quantile(resampled, [0.025, 0.975], method="inverted_cdf")
    monkeypatch.setattr(S, "RESAMPLE_BLOCK", block)
    assert S.n50_interval(solved) == (S.n50({n: float(v.mean()) for n, v in solved.items()}), float(lo), float(hi))


def law_rows(p: float, rounds: int, counts, seed: int = 0, shrink: float = 1.0) -> list[report.Row]:
    """Rows of networks solved as n independent tries of probability p would be (each try a filter);
    `shrink` < 1 makes every filter after the first a try of probability p * shrink."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in counts:
        for r in range(rounds):
            tries = rng.random(n) < np.r_[p, np.full(n - 1, p * shrink)]
            rows.append(report.Row("Naive", n, 5 * n + 1, r, float(tries.any()), False,
                                   (("pattern", "101"), ("steps", 100), ("rates", S.TUNED), ("lr", 0.1),
                                    ("test_error", 0.0), ("missed_starts", ""),
                                    ("detectors", int(tries.sum())), ("distinct", int(tries.any())), ("trained", 100))))
    return rows


def test_the_law_holds_for_independent_tries_and_fails_when_they_are_not():
    arm, = S.law(law_rows(0.3, 2000, (1, 2, 4, 8)), 1.0)
    assert arm.p[1] < 0.3 < arm.p[2]
    for n, solved in arm.solved.items():
        lo, hi = report.wilson_ci(int(solved.sum()), len(solved))
        assert lo < S.independent(0.3, n) < hi
    assert arm.n50[1] <= S.independent_n50(0.3) <= arm.n50[2]
    assert arm.n50_independent[1] <= arm.n50[0] <= arm.n50_independent[2]
    shares = [arm.detectors[n].mean() / n for n in (1, 2, 4, 8)]
    assert max(shares) - min(shares) < 0.05, "independent tries: a constant share of detectors"
    weak, = S.law(law_rows(0.3, 2000, (1, 2, 4, 8), shrink=0.2), 1.0)
    solved8 = weak.solved[8]
    assert report.wilson_ci(int(solved8.sum()), len(solved8))[1] < S.independent(weak.p[0], 8)
    assert weak.n50[1] > weak.n50_independent[2]


def test_distinct_detectors_by_hand():
    w = torch.tensor([[[1.0, 0, 0, 1], [2.0, 0, 0, 2.1], [0, 0, 0, 1], [0, 0, 0, 3]]])
    assert S.distinct_detectors(w, torch.tensor([[True, True, True, True]])).tolist() == [2]
    assert S.distinct_detectors(w, torch.tensor([[False, True, True, False]])).tolist() == [2]
    assert S.distinct_detectors(w, torch.tensor([[False, False, False, False]])).tolist() == [0]


def test_a_budget_is_a_checkpoint_of_one_run_and_equals_a_run_of_that_many_steps():
    s = dataclasses.replace(S.BASE, rounds=3, pattern="1001", steps=40)
    snapshots = {}

    def trained(steps, budgets):
        gen = torch.Generator().manual_seed(5)
        stack = engine.init_stack([eval_cnn.model(s, "Naive", n) for n in (1, 2)], 3, gen)
        marks = S.Checkpoints(report.bar(steps, "test"), budgets,
                              lambda step: snapshots.setdefault(step, {k: v.detach().clone() for k, v in stack.params.items()}))
        eval_cnn.fit(dataclasses.replace(s, steps=steps), gen, stack, marks)
        return stack
    alone = trained(10, [])
    trained(40, [10, 40])
    assert sorted(snapshots) == [10, 40]
    assert all(torch.equal(snapshots[10][k], alone.params[k]) for k in alone.params)


# ----------------------------------------------------------------------------- flags

def jobs_of(*argv):
    return S.jobs(S.arguments().parse_args([str(a) for a in argv]))


def test_quick_with_a_larger_minimum_keeps_the_minimum_and_asks_nothing_of_the_maximum():
    job, = jobs_of("--quick", "--min-filters", 8)
    assert S.counts(job.settings) == [8]
    job, = jobs_of("--quick", "--seq-len", 5, "--min-length", 3, "--max-length", 4)
    assert job.record["pattern"] == ["101", "1001", "111", "1101", "110", "1100"]


def flags_of_this_script() -> set[str]:
    return {o for a in S.arguments()._actions for o in a.option_strings}


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--seq-len", "4", "--max-length", "4"], "--max-length (4) must be below --seq-len (4)"),
    (["--seq-len", "1"], "--max-length (6) must be below --seq-len (1)"),
    (["--quick", "--seq-len", "4", "--max-length", "3"], "--min-length (4) is above --max-length (3)"),
    (["--family", "inside,ones"], "--family must list families among inside, three, tail, got 'ones'"),
    (["--family", "three", "--min-length", "2"], "--min-length (2) is below 3, the shortest pattern of family three"),
    (["--min-filters", "3", "--max-filters", "3"], "--min-filters (3) to --max-filters (3) holds no power of two"),
    (["--budgets", "9"], "--budgets must be in [1, 8], got 9"),
    (["--budgets", "6", "--extend", "3"], "--budgets (6) and --extend (3) make more than 8 budgets"),
    (["--extend", "5"], "--extend must be in [0, 4], got 5"),
    (["--stop-set", "0"], "--stop-set must be in [1, 100000], got 0"),
    (["--pattern", "1101"], "unrecognized arguments: --pattern 1101"),
    (["--max-length", "5000"], "--max-length must be in [1, 4095], got 5000"),
])
def test_bad_flags_exit_2_with_one_line_naming_only_this_scripts_flags(argv, message, tmp_path, capsys):
    assert cli.main(S.arguments(), S.jobs, [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())
    named = {w.strip("(),:'") for w in err.split() if w.startswith("--")}
    assert named - {"--pattern"} <= flags_of_this_script() if "unrecognized" in err else named <= flags_of_this_script()


# ----------------------------------------------------------------------------- one quick run

QUICK = ["--quick", "--rounds", "4", "--steps", "30", "--max-length", "4"]   # one pattern of each family


@background
def scaling_quick_run(folder):
    """One quick run through the command line, then `--plot-only` on its files: (its folder, what the redraw
    printed)."""
    assert cli.main(S.arguments(), S.jobs, [*QUICK, "--out", str(folder), "--device", "cpu"]) == 0
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert cli.main(S.arguments(), S.jobs, [*QUICK, "--plot-only", "--out", str(folder)]) == 0
    return folder, printed.getvalue()


def test_quick_run_writes_declared_columns_and_records_only_what_it_trains(scaling_quick_run):
    quick_run, _ = scaling_quick_run
    rows = report.read_csv(quick_run / "scaling_cnn.csv", S.FIGURE.models, S.FIGURE.columns)
    trained = ["1001", "1101", "1100"]                                    # inside, three, tail
    assert {r.model for r in rows} == {"Naive"} and {r.sweep for r in rows} == {1, 2}
    assert sorted({r.get("pattern") for r in rows}) == sorted(trained) and {r.get("steps") for r in rows} == {30, 120, 480}
    assert {r.params for r in rows if r.sweep == 2 and r.get("pattern") == "1001"} == {2 * 4 + 3}
    assert all(0 <= r.get("distinct") <= r.get("detectors") <= r.sweep for r in rows)
    tuned = [r for r in rows if r.get("rates") == S.TUNED]
    assert len(tuned) == len(trained) * 2 * 3 * 4                          # patterns x counts x budgets x rounds
    protocol = [r for r in rows if r.get("rates") == S.PROTOCOL_RATE]      # the protocol's rate, at its budget
    assert len(protocol) == len(trained) * 2 * 4 and {(r.get("steps"), r.get("lr")) for r in protocol} == {(30, 0.1)}
    settings = json.loads((quick_run / "scaling_cnn.json").read_text())["settings"]
    assert settings["pattern"] == trained and settings["steps"] == [30, 120] and settings["further"] == [480]
    assert settings["filters"] == [1, 2]
    assert settings["study"]["family"] == "inside,three,tail"
    assert (quick_run / "scaling_cnn.png").stat().st_size > 10_000


def test_the_stopping_rule_stops_rounds_where_they_were_and_trains_the_others_on(scaling_quick_run):
    quick_run, _ = scaling_quick_run
    rows = report.read_csv(quick_run / "scaling_cnn.csv", S.FIGURE.models, S.FIGURE.columns)
    at = {(r.get("pattern"), r.sweep, r.round, r.get("steps")): r for r in rows if r.get("rates") == S.TUNED}
    further = [r for r in at.values() if r.get("steps") == 480]
    assert all(r.get("trained") == r.get("steps") for r in at.values() if r.get("steps") <= 120)
    assert {r.get("trained") for r in further} == {120, 480}, "some rounds stop, some go on"
    for r in further:
        before = at[(r.get("pattern"), r.sweep, r.round, 120)]
        same = (r.score, r.get("test_error"), r.get("detectors")) == (before.score, before.get("test_error"),
                                                                        before.get("detectors"))
        if r.get("trained") == 120:
            assert same, "a stopped round is measured as it was when it stopped"
    moved = [r for r in further if r.get("trained") == 480
             and r.get("test_error") != at[(r.get("pattern"), r.sweep, r.round, 120)].get("test_error")]
    assert moved, "rounds that go on train"
    assert "stopping rule: per count, rounds stopped" in S.notes(rows, 1.0)


def test_the_failures_at_a_further_budget_add_up_and_count_wrong_sequences():
    """Three wide networks at a further budget: one stopped with one wrong sequence of 2000, one gone on with
    two wrong, one diverged; a one-filter failure and a solved one are not counted."""
    def row(n, r, score, trained, diverged=False):
        return report.Row("Naive", n, 5 * n + 1, r, score, diverged,
                          (("pattern", "101"), ("steps", 400), ("rates", S.TUNED), ("lr", 0.1), ("test_error", 0.0),
                           ("missed_starts", ""), ("detectors", 0), ("distinct", 0), ("trained", trained)))
    rows = [row(2, 0, 1 - 1 / 2000, 100), row(2, 1, 1 - 2 / 2000, 400), row(4, 0, 0.5, 400, True),
            row(1, 0, 0.9, 400), row(4, 1, 1.0, 100)]
    rows[1] = dataclasses.replace(rows[1], extra=tuple((k, 3 / S.test_size("101") if k == "test_error" else v)
                                                       for k, v in rows[1].extra))
    assert S.failures(rows, [400], 1.0) == [
        "wide networks failing at 400 steps: 3; stopped by the rule 1 (1 wrong x1 of 2000), went on 1 (2 wrong x1), "
        f"diverged 1; the same networks but the diverged, on the stratified test set (about {S.test_size('1001')} sequences): "
        "0 wrong x1, 3 wrong x1"]


def test_the_further_budgets_leave_the_common_ones_as_they_were(scaling_quick_run, tmp_path):
    """The stopping rule draws from a generator of its own: without it, every other row is the same."""
    quick_run, _ = scaling_quick_run
    assert cli.main(S.arguments(), S.jobs, [*QUICK, "--extend", "0", "--out", str(tmp_path)]) == 0
    without = (tmp_path / "scaling_cnn.csv").read_text().splitlines()
    header, *rows = (quick_run / "scaling_cnn.csv").read_text().splitlines()
    steps, trained = header.split(",").index("steps"), header.split(",").index("trained")
    assert without[0] == header
    assert [r for r in rows if r.split(",")[steps] != "480"] == without[1:]
    assert all(r.split(",")[trained] == r.split(",")[steps] for r in without[1:])


def test_quick_run_replots_from_its_csv(scaling_quick_run):
    _, printed = scaling_quick_run
    assert "n50 at 30 steps, protocol rates" in printed and "n50 at 120 steps, tuned rates" in printed
    assert "| inside | `1001` |" in printed


# ----------------------------------------------------------------------------- bounded training data

def points_drawn(monkeypatch) -> list[torch.Tensor]:
    """Spy: every tensor of points data.and_points draws from now on, in order."""
    drawn, real = [], data.and_points
    monkeypatch.setattr(data, "and_points", lambda shape, gen: (lambda xy: drawn.append(xy[0]) or xy)(real(shape, gen)))
    return drawn


def one_round_of_inputs(steps: int) -> int:
    """Bytes of the points of one round's training data of `steps` steps, as eval_bool draws them."""
    with pytest.MonkeyPatch.context() as mp:
        drawn = points_drawn(mp)
        eval_bool.training_data(1, steps, torch.Generator().manual_seed(0))
    return sum(x.numel() * x.element_size() for x in drawn)


def test_training_data_is_drawn_in_bounded_blocks(monkeypatch):
    """A budget of 7 rounds' inputs: 15 rounds (5 rounds of 3 widths) are drawn as blocks of 7, 7 and 1 rounds,
    each within the budget."""
    budget = 7 * one_round_of_inputs(40)
    monkeypatch.setattr(eval_bool, "DATA_BLOCK_BYTES", budget)
    drawn = points_drawn(monkeypatch)
    s = dataclasses.replace(eval_bool.PROTOCOL, rounds=5, steps=40, max_width=3)
    with report.bar(s.steps, "test") as bar:
        eval_bool.train(s, torch.Generator().manual_seed(0), [eval_bool.model(s, "Naive", w) for w in s.sizes()], bar)
    assert [x.shape[:2] for x in drawn] == [(40, 7), (40, 7), (40, 1)]              # (steps, rounds) of each block
    assert [x.numel() * x.element_size() for x in drawn][0] == budget


def test_a_block_is_as_many_rounds_as_fit_its_budget_and_the_protocol_fits_one():
    """block_rounds(steps): the most rounds whose inputs fit DATA_BLOCK_BYTES, at least one; the protocol's whole
    stack is one block (drawn at once, as the committed results were)."""
    step = one_round_of_inputs(1)                        # a round's inputs: one batch of points per step
    for steps in (1, 10, 500, 2000, 10 ** 6):
        rounds = eval_bool.block_rounds(steps)
        assert rounds >= 1 and (rounds == 1 or rounds * steps * step <= eval_bool.DATA_BLOCK_BYTES), steps
        assert (rounds + 1) * steps * step > eval_bool.DATA_BLOCK_BYTES, f"at {steps} steps one more round fits"
    assert one_round_of_inputs(500) == 500 * step
    protocol = eval_bool.PROTOCOL
    assert eval_bool.block_rounds(protocol.steps) >= protocol.rounds * len(protocol.sizes()), \
        "the protocol's stack must be drawn at once, as the committed results were"


def test_tied_rates_race_before_each_count_chooses(monkeypatch):
    """tuned_rates hands every count's table (each rate's tuning rounds) to tuning.race, then decides each
    count on the table as the race left it: a race that makes the largest rate win at every count is obeyed."""
    import tuning
    base = dataclasses.replace(S.BASE, pattern="101", steps=6, rounds=2, max_filters=2)
    own = dataclasses.replace(S.PROTOCOL, tuning_rounds=2, selection=20)
    seen = []

    def race(script, s, tables, selection, criterion, gen, bar):
        seen.append({arm.sweep: {p: len(v) for p, v in table.items()} for arm, table in tables.items()})
        for table in tables.values():                      # the race's rounds: only the largest rate solves
            for p in table:
                table[p] = np.concatenate([table[p], np.full(6, 1.0 if p[0] == max(own.lrs()) else 0.5, np.float32)])
        return []
    monkeypatch.setattr(tuning, "race", race)
    with report.bar(None, "test") as bar:
        chosen = S.tuned_rates(base, own, torch.Generator().manual_seed(0), bar)
    assert seen == [{n: {(lr, base.momentum): 2 for lr in own.lrs()} for n in S.counts(base)}]
    assert [c.lr for c in chosen] == [max(own.lrs())] * len(S.counts(base))
