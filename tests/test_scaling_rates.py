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

TINY = ["--quick", "--family", "inside,tail", "--min-length", "4", "--max-length", "4", "--steps", "10",
        "--budgets", "2", "--tuning-rounds", "2", "--max-filters", "2", "--selection", "20"]


def run(tmp_path, *more) -> tuple[list[report.Row], dict]:
    argv = [*TINY, *map(str, more), "--out", str(tmp_path)]
    assert cli.main(S.arguments(), S.jobs, argv) == 0
    rows = report.read_csv(tmp_path / f"{S.NAME}.csv", S.FIGURE.models, S.FIGURE.columns)
    return rows, json.loads((tmp_path / f"{S.NAME}.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp("rates"), "--rounds", 3)


def test_every_tuned_row_carries_its_chosen_rate_and_the_protocol_runs_at_its_own(tiny):
    rows, record = tiny
    chosen = record["settings"]["chosen"]
    assert set(chosen) == {"1001", "1100"}
    for r in rows:
        if r.get("rates") == S.TUNED:
            assert r.get("lr") == chosen[r.get("pattern")][str(r.sweep)]["lr"] and r.get("lr") in (0.1, 0.3, 1.0)
        else:
            assert r.get("rates") == S.PROTOCOL_RATE and r.get("lr") == 0.1 and r.get("steps") == 10
    assert {r.get("steps") for r in rows if r.get("rates") == S.TUNED} == {10, 40, 160}


def test_the_rates_are_chosen_before_the_reported_rounds_exist(tiny, tmp_path):
    """Another number of reported rounds leaves every choice as it was: the tuning rounds come first, from the
    pattern's own seed, and nothing reported is seen by them."""
    _, more = run(tmp_path, "--rounds", 5)
    assert more["settings"]["chosen"] == tiny[1]["settings"]["chosen"]


def test_patterns_side_by_side_give_the_numbers_of_one_process(tiny, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cli.workers_for(2, torch.device("cpu")) == 1
        rows, _ = run(tmp_path, "--rounds", 3)
    finally:
        torch.set_num_threads(before)
    assert report.csv_text(rows, S.FIGURE.columns) == report.csv_text(tiny[0], S.FIGURE.columns)


@pytest.mark.parametrize("rates", ["0", "-1", "a", "0.1,0.1", "inf", "", "nan", "1e31"])
def test_bad_rates_are_refused_in_one_line(rates, tmp_path, capsys):
    assert cli.main(S.arguments(), S.jobs, [*TINY, "--rates", rates, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rates" in err[0]
