import gc
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import pytest

# One thread for torch, here and in every child process a test starts (they inherit the environment): the
# tensors of the tests are tiny, and a second intra-op thread on shared cores makes a small matmul 100 to
# 1000 times slower (a --quick run of eval_cnn.py in a fresh process: 7 s on two threads, 2.4 s on one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import background  # noqa: E402
import cli  # noqa: E402
import eval_bool  # noqa: E402
import eval_cnn  # noqa: E402

torch.set_num_threads(1)

# A full collection walks every object of this process (torch, matplotlib, the shared runs): at Python's default
# thresholds, a figure's many short-lived objects set off dozens of them, a quarter of a second each. Collect less
# often (what is freed is the same).
gc.set_threshold(10_000)


# ----------------------------------------------------------------------------- runs shared by several modules

FAITHFUL = {"cnn": eval_cnn, "bool": eval_bool}


def faithful_run(script: str, *argv) -> tuple[int, str]:
    """eval_{script}.py's command line, in process: its status and what it printed."""
    module, printed = FAITHFUL[script], io.StringIO()
    with redirect_stdout(printed):
        code = cli.main(module.arguments(), module.jobs, [str(a) for a in argv])
    return code, printed.getvalue()


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory):
    """One --quick run of each faithful script (eval_cnn.py, eval_bool.py) at seed 0, in process, shared by every
    test that reads its files or its table: {script: (folder, stdout, {file name: bytes} as the run wrote them)}
    (`redrawn` redraws the figure in that folder)."""
    out = {}
    for script in FAITHFUL:
        folder = tmp_path_factory.mktemp(f"quick_{script}")
        code, printed = faithful_run(script, "--quick", "--out", folder, "--device", "cpu")
        assert code == 0
        out[script] = (folder, printed, {p.name: p.read_bytes() for p in folder.iterdir()})
    return out


@pytest.fixture(scope="session")
def redrawn(quick_runs):
    """`--quick --plot-only` in place on each quick run's folder, its figure deleted first, once for every test that
    reads a redraw: {script: (status, stdout, the folder's files before, after)}."""
    out = {}
    for script, (folder, *_) in quick_runs.items():
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        (folder / f"{FAITHFUL[script].FIGURE.name}.png").unlink()
        code, printed = faithful_run(script, "--quick", "--plot-only", "--out", folder)
        out[script] = (code, printed, before, {p.name: p.read_bytes() for p in folder.iterdir()})
    return out


# ----------------------------------------------------------------------------- work in the background

def pytest_collection_modifyitems(items):
    """The tests that read background work (background.py) run last: by then it is done."""
    items.sort(key=lambda item: any(name in background.WORK for name in item.fixturenames))


@pytest.fixture(scope="session", autouse=True)
def started(request, tmp_path_factory):
    """The background work the selected tests read, submitted as the session starts, in the order they first
    read it, to two processes forked from this one: {name: its future}."""
    names = dict.fromkeys(n for item in request.session.items for n in item.fixturenames if n in background.WORK)
    if not names:
        yield {}
        return
    # imported at first use, here and there alike (the figures' matplotlib and PIL, the dynamo that torch.optim
    # and torch's flop counter take in: a second and a half): once, before the fork, not once in each process
    import matplotlib.backends.backend_agg, PIL.PngImagePlugin, torch._dynamo  # noqa: E401, F401
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"), initializer=background.start) as pool:
        yield {name: pool.submit(background.run, name, tmp_path_factory.mktemp(name)) for name in names}
        pool.shutdown(cancel_futures=True)
