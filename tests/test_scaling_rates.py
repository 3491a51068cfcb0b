"""The scaling study's learning rates (issue "Harder patterns, fairly", item 2): each pattern and filter count
at the rate of --rates that solves most of its own tuning rounds, chosen before the reported rounds exist
and recorded in the JSON and on every row; the protocol's rate at its own budget beside; patterns run side
by side in processes with the same numbers as in one; bad --rates refused in one line."""
import json

import pytest
import torch

import cli
import eval_scaling as S
import report
from background import background

TINY = ["--quick", "--family", "inside,tail", "--min-length", "4", "--max-length", "4", "--steps", "10",
        "--budgets", "2", "--tuning-rounds", "2", "--max-filters", "2", "--selection", "20"]


def run(folder, *more, threads=1) -> tuple[list[report.Row], dict, int]:
    """The tiny run through the command line on `threads` intra-op threads: its rows, its record and how many
    processes its two patterns ran in."""
    argv = [*TINY, *map(str, more), "--out", str(folder), "--device", "cpu"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        workers = cli.workers_for(2, torch.device("cpu"))
        assert cli.main(S.arguments(), S.jobs, argv) == 0
    finally:
        torch.set_num_threads(before)
    rows = report.read_csv(folder / f"{S.NAME}.csv", S.FIGURE.models, S.FIGURE.columns)
    return rows, json.loads((folder / f"{S.NAME}.json").read_text()), workers


@background
def rate_runs(folder):
    """The tiny run with 3 reported rounds, its patterns side by side (two threads: a process each), the same in
    one process, and with 5 reported rounds: {which: what `run` gives}."""
    return {"side by side": run(folder / "a", "--rounds", 3, threads=2),
            "one process": run(folder / "b", "--rounds", 3), "5 rounds": run(folder / "c", "--rounds", 5)}


def test_every_tuned_row_carries_its_chosen_rate_and_the_protocol_runs_at_its_own(rate_runs):
    rows, record, _ = rate_runs["side by side"]
    chosen = record["settings"]["chosen"]
    assert set(chosen) == {"1001", "1100"}
    for r in rows:
        if r.get("rates") == S.TUNED:
            assert r.get("lr") == chosen[r.get("pattern")][str(r.sweep)]["lr"] and r.get("lr") in (0.1, 0.3, 1.0)
        else:
            assert r.get("rates") == S.PROTOCOL_RATE and r.get("lr") == 0.1 and r.get("steps") == 10
    assert {r.get("steps") for r in rows if r.get("rates") == S.TUNED} == {10, 40, 160}


def test_the_rates_are_chosen_before_the_reported_rounds_exist(rate_runs):
    """Another number of reported rounds leaves every choice as it was: the tuning rounds come first, from the
    pattern's own seed, and nothing reported is seen by them."""
    assert rate_runs["5 rounds"][1]["settings"]["chosen"] == rate_runs["side by side"][1]["settings"]["chosen"]


def test_patterns_side_by_side_give_the_numbers_of_one_process(rate_runs):
    (apart, _, workers), (together, _, one) = rate_runs["side by side"], rate_runs["one process"]
    assert (workers, one) == (2, 1)
    assert report.csv_text(apart, S.FIGURE.columns) == report.csv_text(together, S.FIGURE.columns)


@pytest.mark.parametrize("rates", ["0", "-1", "a", "0.1,0.1", "inf", "", "nan", "1e31"])
def test_bad_rates_are_refused_in_one_line(rates, tmp_path, capsys):
    assert cli.main(S.arguments(), S.jobs, [*TINY, "--rates", rates, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rates" in err[0]
