"""The search study: flags refused before training, files, choices blind to the validation set, budgets as
stated, same seed same CSV."""
import csv
import dataclasses
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

import cli
import engine
import eval_bool
import eval_cnn
import eval_search as X
import report
from background import background


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(X.arguments(), X.jobs, [str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@background
def search_quick_run(folder):
    """One quick run of both experiments through the command line: (its folder, what it printed)."""
    code, printed, _ = main("--quick", "--steps", 10, "--max-width", 4, "--rounds", 3, "--tuning-rounds", 3,
                            "--out", folder, "--device", "cpu")
    assert code == 0
    return folder, printed


def tiny(name="cnn", seed=0):
    """A small job run through the API: its rows and what it recorded."""
    sizes = {"max_filters": 2} if name == "cnn" else {"max_width": 4}
    s = dataclasses.replace(X.PROTOCOLS[name], rounds=6, steps=20, **sizes).check()
    study = dataclasses.replace(X.OWN[name], tuning_rounds=6, selection=30).check_with(s)
    job = X.job(name, s, study)
    rows = job.run(torch.Generator().manual_seed(seed))[f"search_{name}"]
    return rows, job.record


@background
def tiny_searches(folder):
    """The tiny cnn job at seed 0 (honest), again at seed 0, at seed 1, and at seed 0 with every validation scored
    upside down (flipped): ({which: (its rows, what it recorded)}, the networks of each stack that the flipped
    run's validation scored)."""
    runs = {"honest": tiny(), "again": tiny(seed=0), "other seed": tiny(seed=1)}
    seen = []
    real = eval_cnn.validation

    def upside_down(s, gen, cycle):
        scorer = real(s, gen, cycle)

        def score(stack):
            seen.append(stack.networks)
            scores, diverged = scorer(stack)
            return 1 - scores, diverged
        return score
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eval_cnn, "validation", upside_down)
        runs["flipped"] = tiny()
    return runs, seen


@pytest.mark.parametrize("argv", [["--tuning-rounds", 0], ["--selection", -3], ["--rounds", 0],
                                  ["--experiment", "bool", "--max-width", 1], ["--steps", "nan"],
                                  ["--experiment", "dnn"], ["--lr", 0.1]])
def test_bad_flags_are_refused_before_anything_trains(argv, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("trained before the flags were checked")
    monkeypatch.setattr(engine, "train", refuse)
    code, out, err = main(*argv, "--out", tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("eval_search.py: error:")
    assert not list(tmp_path.iterdir())


def test_quick_run_writes_every_arm_with_its_costs(search_quick_run):
    out, printed = search_quick_run
    for name in ("cnn", "bool"):
        fig = X.figure(name, 1)
        assert (out / f"search_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        rows = report.read_csv(out / f"search_{name}.csv", fig.models, fig.columns)
        assert {r.model for r in rows} >= set(X.ARMS) - {X.MEMETIC_PSO, X.MEMETIC_ES}
        info = json.loads((out / f"search_{name}.json").read_text())
        assert info["settings"]["study"]["tuning_rounds"] == 3 and info["settings"]["rounds"] == 3
        assert info["settings"]["unit_macs"] > 0
        for r in rows:
            assert r.get("macs") <= r.sweep * info["settings"]["unit_macs"], (r.model, r.sweep)
        assert "- wide:" in printed


def test_budgets_are_as_stated_by_hand(search_quick_run):
    """cnn at 10 steps: a unit is 10 steps x (forward + 2 forwards) x (4 x 61 + 1) multiply-adds x 2 sequences.
    Wide Naive(b) costs b units exactly; a best of k, k units; PSO with k particles on fitness batches of
    `batch` pairs evaluates k candidates first and then every generation, each evaluation 245 x 2 x batch."""
    out, _ = search_quick_run
    unit = 10 * 3 * 245 * 2
    info = json.loads((out / "search_cnn.json").read_text())["settings"]
    assert info["unit_macs"] == unit
    fig = X.figure("cnn", 1)
    rows = report.read_csv(out / "search_cnn.csv", fig.models, fig.columns)
    cost = {(r.model, r.sweep): (r.get("macs"), r.get("examples"), r.get("candidates")) for r in rows}
    for b in (1, 2, 3):
        assert cost[X.WIDE, b] == (b * unit, 10 * 2, 1) and cost[X.RESTARTS, b] == (b * unit, b * 10 * 2, b)
        assert cost[X.LONGER, b] == (b * unit, b * 10 * 2, 1)
        chosen = info["chosen"][X.PSO][str(b)]
        k, batch = chosen["particles"], chosen["batch"]
        evaluation = 245 * 2 * batch
        generations = (b * unit - k * evaluation) // (k * evaluation)
        assert chosen["generations"] == generations
        assert cost[X.PSO, b] == ((1 + generations) * k * evaluation, (1 + generations) * 2 * batch, k)
        assert b * unit - k * evaluation < cost[X.PSO, b][0] <= b * unit


def test_the_choice_never_looks_at_the_validation_set(tiny_searches):
    """Score every validation upside down: every choice (grid points, candidates) must stay as it was, the
    reported scores must change, and the validation set must only ever see the reported rounds' final networks."""
    runs, seen = tiny_searches
    (rows, record), (flipped, record2) = runs["honest"], runs["flipped"]
    assert json.dumps(record2, sort_keys=True) == json.dumps(record, sort_keys=True)
    assert [r.score for r in flipped] != [r.score for r in rows]
    assert seen and set(seen) == {6} and len(seen) == len({(r.model, r.sweep) for r in rows})
    picks = [v for arm in record["chosen"].values() for v in arm.values() if len(v["grid"]) > 1]
    assert picks, "some grid must offer a choice, or the test proves nothing"


def test_same_seed_same_csv(tiny_searches):
    """A second run at the honest run's seed writes the same CSV; a run at another seed another."""
    runs, _ = tiny_searches
    fig = X.figure("cnn", 1)
    a = report.csv_text(runs["honest"][0], fig.columns)
    assert a == report.csv_text(runs["again"][0], fig.columns)
    assert a != report.csv_text(runs["other seed"][0], fig.columns)
