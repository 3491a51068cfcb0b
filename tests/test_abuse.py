"""What a new user's abuse must meet (issue "A study is one unit too"): tampered files refused, a run's
files replaced as one unit, messages that say what is on disk, huge values refused, a clean working tree.
The tampered-file corpus lives in tests/tampered/ (remade by tests/tampered/make.py)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cli
import eval_bool
import eval_cnn
import report
from background import background

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "tampered"
SCRIPTS = {"cnn": eval_cnn, "bool": eval_bool}
CASES = sorted((script, case.name) for script in SCRIPTS for case in (CORPUS / script).iterdir() if case.is_dir())


def main(script: str, *argv) -> int:
    module = SCRIPTS[script]
    return cli.main(module.arguments(), module.jobs, [str(a) for a in argv])


@pytest.mark.parametrize("script,case", CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_plot_only_refuses_every_tampered_file(tmp_path, capsys, script, case):
    folder = shutil.copytree(CORPUS / script / case, tmp_path / case)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(script, "--quick", "--plot-only", "--out", folder) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eval_{script}.py: error: ") and err.count("\n") == 1 and len(err) < 400, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before          # nothing written


def test_the_corpus_is_refused_for_its_damage_not_by_accident(quick_runs, redrawn):
    """The untampered quick run it was made from redraws fine (else every case would pass for nothing), and the
    corpus records hold that very run's settings (conftest's shared quick runs and their redraw)."""
    for script, module in SCRIPTS.items():
        folder, *_ = quick_runs[script]
        code, *_ = redrawn[script]
        assert code == 0, script
        name = module.FIGURE.name
        run = json.loads((folder / f"{name}.json").read_text())
        made_from = json.loads((CORPUS / script / "edited_score" / f"{name}.json").read_text())
        assert made_from["settings"] == run["settings"] and made_from["quick"] is run["quick"] is True


def test_a_redraw_in_place_leaves_the_run_files_as_they_were(quick_runs, redrawn):
    """`--plot-only` on the folder of a run rewrites its figure only: CSV and record stay byte for byte
    (the committed results stay clean under `git status`)."""
    folder, *_ = quick_runs["cnn"]
    code, printed, before, after = redrawn["cnn"]
    kept = lambda files: {n: b for n, b in files.items() if n.endswith((".csv", ".json"))}
    assert code == 0 and len(kept(before)) == 2 and kept(after) == kept(before)
    assert "wrote " + str(folder / "cnn_experiment.png") in printed


def test_a_failing_second_experiment_leaves_the_first_ones_files_untouched(tmp_path, capsys):
    """A study's figures are one result: two jobs, the second fails after the first ran; nothing is
    written, the old files of both stay."""
    s = eval_bool.PROTOCOL.quick()
    figure = lambda name: eval_bool.FIGURE.__class__(**{**eval_bool.FIGURE.__dict__, "name": name})
    ok = cli.Job((figure("first"),), s, s, lambda gen: {"first": [report.Row("Naive", 1, 5, 0, 0.5)]})

    def broken(gen):
        raise cli.UsageError("the second experiment failed")
    bad = cli.Job((figure("second"),), s, s, broken)
    old = {tmp_path / f"{n}.csv": b"old\n" for n in ("first", "second")}
    for path, text in old.items():
        path.write_bytes(text)
    parser = eval_bool.arguments()
    assert cli.main(parser, lambda args: [ok, bad], ["--out", str(tmp_path)]) == 2
    assert {p: p.read_bytes() for p in old} == old and len(list(tmp_path.iterdir())) == 2
    assert "second experiment failed" in capsys.readouterr().err


@background
def printing_to_a_full_device(folder: Path):
    """A quick run of eval_cnn.py, its stdout on a full device: how it ended, and what it left in its folder."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "eval_cnn.py", "--quick", "--rounds", "2", "--max-filters", "1", "--steps", "2",
                               "--out", str(folder)],
                              cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    return done, list(folder.iterdir())


def test_output_that_cannot_be_printed_stops_the_run_before_any_file_is_written(printing_to_a_full_device):
    """stdout on a full device: the tables cannot be printed, the run stops with status 1, and what the
    message says about the files is true: none was written."""
    done, left = printing_to_a_full_device
    errors = [line for line in done.stderr.splitlines() if "error:" in line]       # (beside the progress bar)
    assert done.returncode == 1 and len(errors) == 1 and done.stderr.endswith(errors[0] + "\n"), done.stderr
    assert "the previous files are untouched" in errors[0] and not left


def test_a_failure_after_the_files_are_written_says_they_were(tmp_path, capsys, monkeypatch):
    """If saying "wrote" fails, the message says the results were written (they were)."""
    real_print = print

    def failing_wrote(*args, **kwargs):
        if args and str(args[0]).startswith("wrote "):
            raise OSError(28, "No space left on device")
        return real_print(*args, **kwargs)
    monkeypatch.setattr("builtins.print", failing_wrote)
    assert main("cnn", "--quick", "--steps", "2", "--out", tmp_path) == 1
    err = capsys.readouterr().err
    assert "the results were written" in err and (tmp_path / "cnn_experiment.csv").exists()


@pytest.mark.parametrize("flag,value", [("--steps", "99999999999999999999"), ("--steps", "9223372036854775808"),
                                        ("--rounds", str(10 ** 12)), ("--max-filters", str(2 ** 70))])
def test_huge_values_are_refused_in_one_line(capsys, flag, value):
    assert main("cnn", flag, value) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most" in err and flag in err


def test_an_empty_out_and_a_refused_run_leave_the_tree_clean(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main("cnn", "--quick", "--out", "") == 2
    assert main("cnn", "--quick", "--lr", "nan") == 2
    assert main("cnn", "--rounds", str(10 ** 8)) == 2                      # too large for the memory
    assert not list(tmp_path.iterdir())                                   # no results, no empty runs/ folder
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and err.count("eval_cnn.py: error: ") == 3, err          # one line each


def test_every_results_file_is_written_without_quoting():
    """A model name with a comma or a quote would be quoted in the CSV, which `--plot-only` refuses: no
    script's figures may declare one (a study's figure would write files it cannot read back)."""
    import importlib
    for name in ("eval_cnn", "eval_bool", "eval_ablations", "eval_exploration", "eval_mechanism", "eval_scaling",
                 "eval_search"):
        module = importlib.import_module(name)
        for job in module.jobs(module.arguments().parse_args(["--quick"])):
            for figure in job.figures:
                assert not [m for m in figure.models if set(m) & {",", '"', "\n", "\r"}], (name, figure.name)


STUDIES = {"eval_ablations": ["--experiment", "bool"], "eval_exploration": ["--experiment", "bool"],
           "eval_mechanism": ["--experiment", "bool"], "eval_search": ["--experiment", "bool"], "eval_scaling": []}


def delete_a_row(csv_path, record_path):
    head, first, *rest = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text(head + "".join(rest))


def drop_the_record(csv_path, record_path):
    record_path.unlink()


def quote_a_field_and_vouch_for_it(csv_path, record_path):
    head, first, *rest = csv_path.read_text().splitlines(keepends=True)
    model, tail = first.split(",", 1)
    csv_path.write_text(head + f'"{model}",{tail}' + "".join(rest))
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "csv_sha256": report.digest(csv_path.read_text())}))


def committed_copy(study: str, folder: Path):
    """A copy of a study's committed results (its default run), and the study's module."""
    import importlib
    module = importlib.import_module(study)
    names = [f.name for job in module.jobs(module.arguments().parse_args(STUDIES[study])) for f in job.figures]
    for name in names:
        for ext in ("csv", "json"):
            shutil.copy(ROOT / "plots" / f"{name}.{ext}", folder)
    return module, names


@pytest.fixture(scope="module")
def committed_rows():
    """Every committed CSV of the studies below as report.read_csv reads it, read once for the module (some are
    megabytes): {(its bytes, models, columns): rows}."""
    import importlib
    read = {}
    for study, argv in STUDIES.items():
        module = importlib.import_module(study)
        for job in module.jobs(module.arguments().parse_args(argv)):
            for f in job.figures:
                path = ROOT / "plots" / f"{f.name}.csv"
                read[(path.read_bytes(), f.models, f.columns)] = report.read_csv(path, f.models, f.columns)
    return read


@pytest.mark.parametrize("damage", [delete_a_row, drop_the_record, quote_a_field_and_vouch_for_it])
@pytest.mark.parametrize("study", STUDIES)
def test_plot_only_of_every_study_refuses_its_committed_files_once_tampered(tmp_path, capsys, monkeypatch, study, damage,
                                                                           committed_rows):
    """One file of a copy of the study's committed results damaged: the study refuses with one line and
    writes nothing. (A CSV byte for byte a committed one is not read again: `committed_rows` holds what
    report.read_csv gives for it; the damaged one is read as any file is.)"""
    real = report.read_csv
    monkeypatch.setattr(report, "read_csv", lambda path, models=report.MODELS, columns=(): list(
        committed_rows.get((Path(path).read_bytes(), models, columns)) or real(path, models, columns)))
    module, names = committed_copy(study, tmp_path)
    damage(tmp_path / f"{names[0]}.csv", tmp_path / f"{names[0]}.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert cli.main(module.arguments(), module.jobs, [*STUDIES[study], "--plot-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{study}.py: error: ") and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_redraws_its_committed_files_untampered(tmp_path, study, committed_rows):
    """The control: undamaged, the same copy passes every check `--plot-only` makes of its files (so the
    refusals above come from the damage), and the committed results are those of the study's present
    defaults (their records hold its present settings)."""
    module, names = committed_copy(study, tmp_path)
    args = module.arguments().parse_args(STUDIES[study])
    figures = [(job, figure) for job in module.jobs(args) for figure in job.figures]
    assert [figure.name for _, figure in figures] == names
    for job, figure in figures:
        csv_path = tmp_path / f"{figure.name}.csv"
        assert committed_rows[(csv_path.read_bytes(), figure.models, figure.columns)], "rows read from the copy"
        record = cli.read_record(tmp_path / f"{figure.name}.json", f"{study}.py", figure.name, csv_path, job)
        assert record["figure"] == figure.name and record["csv_sha256"] == report.digest(csv_path.read_text())
        if job.expected is not None:
            cli.check_groups(csv_path, committed_rows[(csv_path.read_bytes(), figure.models, figure.columns)],
                             job.expected(job.settings))


def test_an_allocation_that_fails_anyway_is_one_line_not_a_traceback(monkeypatch, capsys):
    """Beyond the up-front memory estimate, torch's allocator may still refuse (a RuntimeError, not a
    MemoryError): one line, status 2. Any other RuntimeError is a bug and stays one."""
    def refused(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(eval_cnn, "run", refused)
    assert main("cnn", "--quick") == 2
    err = capsys.readouterr().err
    assert err.startswith("eval_cnn.py: error: out of memory") and err.count("\n") == 1

    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")
    monkeypatch.setattr(eval_cnn, "run", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main("cnn", "--quick")


@pytest.mark.parametrize("script", sorted(p.stem for p in ROOT.glob("*.py")))
def test_every_top_level_script_imports(script):
    """Every file at the top imports (a renamed module would break its users here first)."""
    import importlib
    module = importlib.import_module(script)
    assert Path(module.__file__) == ROOT / f"{script}.py"
