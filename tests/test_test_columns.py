"""Every study measures its reported networks on the experiment's large test set (issue "Intervals that
hold", item 2): the committed results files declare the experiment's TEST_COLUMNS and every row carries
them, with an error rate in [0, 1] and, in experiment 1, missed starts that are real start positions
listed once each, in order; a row that misses a start has a test error above zero."""
import csv
from pathlib import Path

import pytest

import data
import eval_bool
import eval_cnn

PLOTS = Path(__file__).resolve().parents[1] / "plots"
STUDIES = ["exploration", "ablation", "search", "mechanism"]
FILES = [(f"{study}_{x.NAME}.csv", x) for study in STUDIES for x in (eval_cnn, eval_bool)] + [("scaling_cnn.csv", eval_cnn)]


@pytest.mark.parametrize("name,x", FILES, ids=[f for f, _ in FILES])
def test_every_reported_network_carries_the_test_columns(name, x):
    with open(PLOTS / name, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(c.name in rows[0] for c in x.TEST_COLUMNS)
    assert ("missed_starts" in rows[0]) == (x is eval_cnn)
    for row in rows:
        error = float(row["test_error"])
        assert 0.0 <= error <= 1.0
        if x is eval_cnn:
            last = data.Pattern(row.get("pattern", eval_cnn.PROTOCOL.pattern), eval_cnn.PROTOCOL.seq_len).last_start
            missed = [int(s) for s in row["missed_starts"].split(";")] if row["missed_starts"] else []
            assert missed == sorted(set(missed)) and all(0 <= s <= last for s in missed)
            assert not missed or error > 0
