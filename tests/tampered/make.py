"""Remake the tampered-file corpus: `python3 tests/tampered/make.py` (from the repository root).

Each case is a folder holding one faithful script's results as a `--quick` run writes them, then damaged
in one way that this project would never write; `--plot-only` must refuse every one with one line and
status 2 (tests/test_abuse.py). Where the damage is in the CSV and the case tests a check beyond the digest,
the record's digest is recomputed, so the digest alone cannot be what refuses it.
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import report  # noqa: E402

HERE = Path(__file__).resolve().parent
NAMES = {"cnn": "cnn_experiment", "bool": "bool_experiment"}


def lines_edit(edit):
    """A CSV damage applied to its data lines (header kept)."""
    def damage(text: str) -> str:
        head, *rows = text.splitlines(keepends=True)
        return head + "".join(edit(rows))
    return damage


def cell(row: str, index: int, value: str) -> str:
    fields = row.rstrip("\n").split(",")
    fields[index] = value
    return ",".join(fields) + "\n"


CSV_DAMAGE = {   # name -> (damage of the CSV text, recompute the digest?)
    "edited_score": (lines_edit(lambda rows: [cell(rows[0], 4, "0.123")] + rows[1:]), False),
    "deleted_row": (lines_edit(lambda rows: rows[1:]), True),
    "diverged_but_perfect": (lines_edit(lambda rows: [cell(cell(rows[0], 4, "1.0"), 5, "1")] + rows[1:]), True),
    "huge_parameter_count": (lines_edit(lambda rows: [cell(r, 2, "999999") if r.split(",")[1] == rows[0].split(",")[1]
                                                      and r.startswith(rows[0].split(",")[0] + ",") else r for r in rows]), True),
    "hardcoded_three_rounds": (lines_edit(lambda rows: rows + [cell(rows[-1], 3, "1"), cell(rows[-1], 3, "2")]), True),
    "sweep_never_written": (lines_edit(lambda rows: [cell(r, 1, "99") if r.split(",")[1] == rows[0].split(",")[1]
                                                     and r.startswith(rows[0].split(",")[0] + ",") else r for r in rows]), True),
    "crlf": (lambda text: text.replace("\n", "\r\n"), True),
    "quoted_field": (lines_edit(lambda rows: ['"' + rows[0].split(",", 1)[0] + '",' + rows[0].split(",", 1)[1]] + rows[1:]), True),
    "full_width_digits": (lines_edit(lambda rows: [cell(rows[0], 3, "\uff10")] + rows[1:]), True),
    "underflowing_score": (lines_edit(lambda rows: [cell(rows[0], 4, "1e-400")] + rows[1:]), True),
    "cut_short": (lambda text: text[:-3], True),
}
JSON_DAMAGE = {
    "missing_record": lambda record: None,
    "nan_in_record": lambda record: json.dumps(record)[:-1] + ', "x": NaN}',
    "deeply_nested_record": lambda record: "[" * 10000 + "]" * 10000,
    "record_of_other_settings": lambda record: json.dumps({**record, "settings": {**record["settings"], "steps": 7}}),
    "record_of_other_figure": lambda record: json.dumps({**record, "figure": "elsewhere"}),
}


def quick_run(script: str, out: Path) -> None:
    subprocess.run([sys.executable, f"eval_{script}.py", "--quick", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True)


def write_case(folder: Path, name: str, csv_text: str, json_text: str | None) -> None:
    folder.mkdir(parents=True)
    (folder / f"{name}.csv").write_bytes(csv_text.encode())
    if json_text is not None:
        (folder / f"{name}.json").write_text(json_text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {script: Path(tmp) / script for script in NAMES}
        for script, out in runs.items():
            quick_run(script, out)
        for script, name in NAMES.items():
            base = HERE / script
            shutil.rmtree(base, ignore_errors=True)
            text = (runs[script] / f"{name}.csv").read_text()
            record = json.loads((runs[script] / f"{name}.json").read_text())
            for case, (damage, redigest) in CSV_DAMAGE.items():
                damaged = damage(text)
                own = {**record, "csv_sha256": report.digest(damaged)} if redigest else record
                write_case(base / case, name, damaged, json.dumps(own))
            for case, damage in JSON_DAMAGE.items():
                write_case(base / case, name, text, damage(record))
            other = next(s for s in NAMES if s != script)       # the other experiment's files under this one's name
            write_case(base / "other_experiment", name, (runs[other] / f"{NAMES[other]}.csv").read_text(),
                       (runs[other] / f"{NAMES[other]}.json").read_text())
            (base / "binary").mkdir()
            (base / "binary" / f"{name}.csv").write_bytes(bytes(range(256)) * 4)
            (base / "binary" / f"{name}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
