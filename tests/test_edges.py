"""The edges of a run: a signal as a script ends or while signals are held, bench.py's runs and
folders when it is stopped, and a full disk told apart from bad input."""
import contextlib
import errno
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import bench
import cli
import eval_cnn
import report
from background import background
from childio import read_until

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--rounds", "1", "--steps", "1"]
BENCH_QUICK = ["--quick", "--repeats", "1", "--plain-rounds", "1", "--rounds", "1"]


def interrupted(script: str, signum: int) -> str:
    return f"{script}: interrupted ({signal.Signals(signum).name}); no file was left half-written\n"


def assert_whole_unit(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["cnn_experiment.csv", "cnn_experiment.json", "cnn_experiment.png"]
    report.read_csv(folder / "cnn_experiment.csv", columns=eval_cnn.FIGURE.columns)   # a cut-short CSV raises DataError
    json.loads((folder / "cnn_experiment.json").read_text())
    assert (folder / "cnn_experiment.png").read_bytes().endswith(b"IEND\xaeB`\x82")


# ----------------------------------------------------------------------------- signals as a script ends

@background
def ctrl_c_just_after_wrote(folder: Path):
    """A tiny run of eval_cnn.py given SIGINT as it says "wrote": its status and stderr."""
    proc = subprocess.Popen([sys.executable, "-u", "eval_cnn.py", *TINY, "--out", folder], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(proc.stdout, b"wrote")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].decode()
    return folder, proc.returncode, err


def test_ctrl_c_just_after_wrote_leaves_a_finished_run(ctrl_c_just_after_wrote):
    """Unbuffered (-u), as on a terminal: "wrote" shows while the script still runs."""
    folder, returncode, err = ctrl_c_just_after_wrote
    assert returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err
    assert_whole_unit(folder)


LATE_SIGNAL = """
import interrupts; interrupts.install()
import os, signal

class Late:                 # deleted as the interpreter tears its modules down, after Python stops handling signals
    def __del__(self, kill=os.kill, me=os.getpid(), signum=signal.{name}):
        kill(me, signum)

late = Late()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_the_interpreter_shuts_down_changes_nothing(signum):
    proc = subprocess.run([sys.executable, "-c", LATE_SIGNAL.format(name=signal.Signals(signum).name)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")


HELD = """
import interrupts; interrupts.install()
import os, signal, threading, time

threading.Thread(target=time.sleep, args=(5,), daemon=True).start()     # one that can take a signal, as torch's can
with interrupts.held():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("held to the end", flush=True)
"""


def test_a_held_block_ends_before_the_signal_is_taken_whichever_thread_takes_it():
    proc = subprocess.run([sys.executable, "-c", HELD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "held to the end\n", interrupted("-c", signal.SIGTERM))


# ----------------------------------------------------------------------------- bench.py's runs

def children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@background
def stopped_bench(folder: Path):
    """bench.py (its temporary folders in `folder`) given SIGTERM once it has started a run: its status and
    stderr, whether a process of its group outlived it, and what it left."""
    proc = subprocess.Popen([sys.executable, "bench.py", *BENCH_QUICK], cwd=ROOT, env={**os.environ, "TMPDIR": str(folder)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not children(proc.pid):
            assert time.monotonic() < end, "bench.py never started a run"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
        return proc.returncode, err, group_alive(proc.pid), list(folder.glob("bench-*"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)          # whatever a failed step left running
        proc.wait()


def test_a_stopped_bench_ends_its_run_and_removes_its_folder(stopped_bench):
    returncode, err, alive, left = stopped_bench
    assert (returncode, err) == (130, interrupted("bench.py", signal.SIGTERM))
    assert not alive, "a run of bench.py outlived it"
    assert not left


# ----------------------------------------------------------------------------- a full disk

def fill(make) -> None:
    """make(0), make(1), ... until the file system says it is full."""
    try:
        for n in itertools.count():
            make(n)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise


@contextlib.contextmanager
def tmpfs(where: Path, options: str):
    """A tiny tmpfs mounted at where (a new folder); the test is skipped where none can be (not root)."""
    where.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", where], capture_output=True).returncode == 0
    except OSError:
        mounted = False
    if not mounted:
        pytest.skip("no tmpfs can be mounted here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=True)


def refused_in(where: Path, real):
    """real(path, ...), but failing under where as on a full disk."""
    def call(path, *args, **kwargs):
        if Path(path).is_relative_to(where):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)
    return call


@pytest.fixture(params=["tmpfs", "patched"])
def no_room(request, tmp_path, monkeypatch):
    """A folder in which nothing more can be created: on a tmpfs with every inode taken, or with os.mkdir,
    os.open and Path.write_bytes made to fail there as they would on one."""
    where = tmp_path / "full"
    if request.param == "patched":
        where.mkdir()
        monkeypatch.setattr(os, "mkdir", refused_in(where, os.mkdir))
        monkeypatch.setattr(Path, "write_bytes", refused_in(where, Path.write_bytes))
        monkeypatch.setattr(os, "open", refused_in(where, os.open))
        yield where
    else:
        with tmpfs(where, "size=1m,nr_inodes=8"):
            fill(lambda n: (where / str(n)).touch())
            yield where


@pytest.mark.parametrize("new", [False, True])
def test_no_room_for_out_is_a_full_disk_not_bad_input(no_room, new, capsys):
    out = no_room / "new" if new else no_room            # made there, or probed there
    assert cli.main(eval_cnn.arguments(), eval_cnn.jobs, [*TINY, "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"eval_cnn.py: error: No space left on device: {out}; the previous files are untouched\n"


@background
def bench_on_a_full_temp_dir(folder: Path):
    """bench.py's main with its temporary folders on a full tmpfs: its status and stderr, and what it left there."""
    with tmpfs(folder / "full", "size=64k") as full, pytest.MonkeyPatch.context() as mp:
        fill(lambda n: (full / str(n)).write_bytes(bytes(1 << 14)))
        mp.setattr(tempfile, "tempdir", str(full))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = bench.main(BENCH_QUICK)
        return status, err.getvalue(), list(full.glob("bench-*"))


def test_bench_on_a_full_temp_dir_tells_how_its_run_ended(bench_on_a_full_temp_dir):
    returncode, err, left = bench_on_a_full_temp_dir
    assert returncode == 1 and err.startswith("bench.py: error: eval_cnn.py --quick --steps 2 failed with status 1: "
                                              "eval_cnn.py: error: No space left on device") and err.count("\n") == 1
    assert not left
