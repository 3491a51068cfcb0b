"""Every file on disk tells the truth about the run that made it: where results go, what is recorded,
one unit of three files, interruptions, study flags that apply or are refused, bench.py's flags."""
import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
import engine
import eval_ablations
import eval_bool
import eval_cnn
import eval_exploration
import report
from background import background
from childio import read_until

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"eval_cnn.py": eval_cnn, "eval_bool.py": eval_bool, "eval_ablations.py": eval_ablations,
           "eval_exploration.py": eval_exploration}


def main(script, *argv):
    module = SCRIPTS[script]
    return cli.main(module.arguments(), module.jobs, [str(a) for a in argv])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


TINY_PROTOCOL = dataclasses.replace(eval_cnn.PROTOCOL, rounds=2, steps=5, max_filters=3)


@pytest.fixture(scope="module")
def committed_unit(tmp_path_factory):
    """The plots/ folder that a run of eval_cnn.py at its defaults writes (the protocol made tiny, so that the
    run at the defaults takes a moment), made once for the module."""
    where = tmp_path_factory.mktemp("committed")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        mp.setattr(eval_cnn, "PROTOCOL", TINY_PROTOCOL)
        assert main("eval_cnn.py") == 0
    assert sorted(p.name for p in where.iterdir()) == ["plots"]
    return where / "plots"


@pytest.fixture
def committed(tmp_path, monkeypatch, committed_unit):
    """A working folder holding plots/ with the unit of a run of eval_cnn.py at its defaults, as the
    repository does (a copy of `committed_unit`; the protocol stays tiny for the test)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(eval_cnn, "PROTOCOL", TINY_PROTOCOL)
    return Path(shutil.copytree(committed_unit, tmp_path / "plots"))


# ----------------------------------------------------------------------------- where results go

def test_a_smoke_run_leaves_the_committed_results_alone_and_says_where_it_wrote(committed, capsys):
    before = snapshot(committed)
    capsys.readouterr()
    assert main("eval_cnn.py", "--quick", "--rounds", 2, "--steps", 5) == 0
    assert snapshot(committed) == before
    (folder,) = (committed.parent / "runs").iterdir()
    assert folder.name.startswith("eval_cnn-") and sorted(p.name for p in folder.iterdir()) == [
        "cnn_experiment.csv", "cnn_experiment.json", "cnn_experiment.png"]
    assert f"wrote {Path('runs') / folder.name / 'cnn_experiment.png'}" in capsys.readouterr().out


def test_plot_only_at_another_threshold_reads_the_committed_run_and_writes_elsewhere(committed, capsys):
    before = snapshot(committed)
    assert main("eval_cnn.py", "--plot-only", "--solved-at", 0.5) == 0
    assert snapshot(committed) == before
    (folder,) = (committed.parent / "runs").iterdir()
    assert (folder / "cnn_experiment.csv").read_bytes() == before["cnn_experiment.csv"]
    settings = json.loads((folder / "cnn_experiment.json").read_text())
    assert settings["replotted"]["solved_at"] == 0.5 and settings["settings"]["solved_at"] == 1.0
    assert settings["replotted"]["from"] == str(Path("plots") / "cnn_experiment.csv")
    assert "0.5" in settings["replotted"]["command"]


def test_folders_at_defaults_for_other_flags_and_with_out():
    def where(*argv, script="eval_cnn.py"):
        module = SCRIPTS[script]
        args = module.arguments().parse_args([str(a) for a in argv])
        return cli.folder(script, module.jobs(args), args)
    assert where() == Path("plots") and where(script="eval_exploration.py") == Path("plots")
    assert where("--lr", 0.2) == where("--lr", 0.2) != where("--lr", 0.3)
    assert where("--lr", 0.2).parent == Path("runs")
    assert len({where("--quick"), where("--seed", 1), where("--solved-at", 0.9), where("--pool", "lse"), where()}) == 5
    assert where("--experiment", "cnn", script="eval_ablations.py") == Path("plots"), "one experiment at its defaults"
    assert where("--steps", 50, script="eval_ablations.py").name.startswith("eval_ablations-")
    assert where("--lr", 0.2, "--out", "mine") == Path("mine")
    assert where("--lr", "0.1") == Path("plots"), "the protocol's own value is the default run"


# ----------------------------------------------------------------------------- what is recorded is what ran

@pytest.mark.parametrize("flag", ["--lr 0.05", "--optimizer adam", "--pool lse", "--temperature 0.5",
                                  "--activation softplus", "--momentum 0.2"])
def test_ablation_study_refuses_the_flags_its_variants_set(flag, tmp_path, capsys):
    assert main("eval_ablations.py", *flag.split(), "--quick", "--out", tmp_path) == 2
    assert "unrecognized arguments" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_each_script_help_describes_that_script_and_its_own_flags():
    helps = {name: " ".join(m.arguments().format_help().split()) for name, m in SCRIPTS.items()}
    assert "Tuned against tuned" in helps["eval_ablations.py"]
    assert "--lr" not in helps["eval_ablations.py"] and "--pool" not in helps["eval_ablations.py"]
    assert "(default: 300 (cnn), 50 (bool))" in helps["eval_ablations.py"]
    assert "--restarts" in helps["eval_exploration.py"] and "--pool" not in helps["eval_exploration.py"]
    assert "--min-width" not in helps["eval_cnn.py"] and "--experiment" not in helps["eval_cnn.py"]
    assert "Is width exploration" in helps["eval_exploration.py"]
    assert "(default: 500)" in helps["eval_cnn.py"] and "(default: 0.948)" in helps["eval_bool.py"]


@pytest.mark.parametrize("script", ["eval_ablations.py", "eval_exploration.py"])
@pytest.mark.parametrize("flag", ["--min-width 0", "--max-width 0", "--min-width 5 --max-width 2", "--rounds 0",
                                  "--solved-at 2"])
def test_a_bad_flag_of_any_experiment_stops_the_study_before_anything_trains(script, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained before checking every flag"))
    assert main(script, *flag.split(), "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- one unit on disk

def test_json_is_strict():
    with pytest.raises(ValueError):
        report.json_text({"temperature": float("nan")})


def test_a_full_disk_in_the_middle_of_a_unit_leaves_the_previous_unit(committed, monkeypatch, capsys):
    before = snapshot(committed)

    def full(text):
        def write(tmp):
            tmp.write_text(text[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return write
    monkeypatch.setattr(report, "write_text", full)
    assert main("eval_cnn.py", "--quick", "--rounds", 2, "--steps", 5, "--seed", 1, "--out", "plots") == 1
    err = capsys.readouterr().err.splitlines()[-1]            # after the progress bar: one line
    assert err == "eval_cnn.py: error: No space left on device; the previous files are untouched"
    assert snapshot(committed) == before


def test_a_failing_rename_puts_the_old_files_back(committed, monkeypatch):
    before = snapshot(committed)
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", flaky)
    assert main("eval_cnn.py", "--quick", "--rounds", 2, "--steps", 5, "--seed", 1, "--out", "plots") == 1
    assert snapshot(committed) == before


def test_an_exception_while_writing_leaves_the_previous_unit_and_no_temporary_file(committed, monkeypatch):
    before = snapshot(committed)
    real = report.write_bytes

    def interrupted(data):
        def write(tmp):
            real(data)(tmp)
            raise KeyboardInterrupt
        return write
    monkeypatch.setattr(report, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main("eval_cnn.py", "--quick", "--rounds", 2, "--steps", 5, "--seed", 1, "--out", "plots")
    assert snapshot(committed) == before


def wait_for_handlers(pid: int, timeout: float = 20.0) -> None:
    """Until the process catches SIGTERM (the first line of every entry script installs the handlers)."""
    bit = 1 << (signal.SIGTERM - 1)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught & bit:
            return
        time.sleep(0.005)
    pytest.fail("the handlers were never installed")


MOMENTS = [(signal.SIGINT, "importing", 0.05), (signal.SIGTERM, "importing", 0.6),
           (signal.SIGINT, "training", 0.0), (signal.SIGTERM, "training", 0.5)]


def signalled_at(folder: Path, signum: int, moment: str, delay: float):
    """A long run of eval_cnn.py given `signum` `delay` seconds after its handlers are installed (while the imports
    run) or after its progress bar shows (training has begun): its status, what it printed and what it left."""
    out = folder / "out"
    proc = subprocess.Popen([sys.executable, "eval_cnn.py", "--quick", "--rounds", "3", "--steps", str(10 ** 6),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_handlers(proc.pid)              # Python's own start-up is not ours to handle
        if moment == "training":
            read_until(proc.stderr, b"eval_cnn:")
        time.sleep(delay)
        proc.send_signal(signum)
        printed, err = proc.communicate(timeout=60)
    finally:
        proc.kill()                              # whatever a failed step left running (once it ended, nothing)
        proc.wait()
    return proc.returncode, printed, err, sorted(p.name for p in out.iterdir()) if out.exists() else []


@background
def signalled(folder: Path):
    """`signalled_at` at every moment of MOMENTS, one run after the other: {moment: what it gave}."""
    return {moment: signalled_at(folder / str(i), *moment) for i, moment in enumerate(MOMENTS)}


@pytest.mark.parametrize("signum, moment, delay", MOMENTS)
def test_a_signal_at_any_moment_gives_one_line_and_leaves_no_temporary_file(signalled, signum, moment, delay):
    """The signal comes `delay` seconds after the handlers are installed (while the imports run) or after the
    progress bar shows (training has begun); the run is made far longer than any of these moments."""
    returncode, printed, err, leftovers = signalled[signum, moment, delay]
    assert "wrote" not in printed, "the run ended before the signal came"
    assert returncode == 130 and "Traceback" not in err
    assert err.endswith(f"eval_cnn.py: interrupted ({signal.Signals(signum).name}); no file was left half-written\n")
    assert leftovers in ([], ["cnn_experiment.csv", "cnn_experiment.json", "cnn_experiment.png"])


# ----------------------------------------------------------------------------- bench.py

@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be a positive integer"),
    (["--plain-rounds", "0"], "--plain-rounds must be a positive integer"),
    (["--repeats", "x"], "invalid int value"),
    (["--rounds", "0"], "--rounds must be positive integers"),
])
def test_bench_rejects_bad_flags_with_one_line(argv, message, capsys):
    import bench
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
