"""Work done in the background: the second core's share of the tests. Work whose results the tests only read (a
study's quick run and its redraw, a script run as a command, a run signalled) is done in two processes forked from
the tests' own as the session starts (conftest's `started`), while the other tests go on; the tests that read it
run last. Work runs on the CPU (--device cpu): CUDA does not survive a fork (test_cuda.py runs every script there)."""
import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

WORK: dict[str, Callable[[Path], Any]] = {}
PR_SET_PDEATHSIG = 1


def background(work: Callable[[Path], Any]):
    """A session fixture named after `work` (a function of a fresh folder, at the top of a test module): what
    work(folder) gives, done in the background. An error or a skip that the work raises is raised here."""
    assert work.__name__ not in WORK, f"two pieces of background work are named {work.__name__}"
    WORK[work.__name__] = work

    @pytest.fixture(scope="session", name=work.__name__)
    def done(started):
        result = started[work.__name__].result()
        if isinstance(result, Skipped):
            pytest.skip(result.reason)
        return result
    return done


@dataclass
class Skipped:
    """Work that skipped itself (pytest's own skip and failure do not travel between processes)."""
    reason: str


class Ended(BaseException):
    """The tests' process has ended: the work stops, its own clean-up done (a tmpfs unmounted, a run killed)."""


def run(name: str, folder: Path):
    """The work named, in a background process."""
    try:
        return WORK[name](folder)
    except pytest.skip.Exception as e:
        return Skipped(e.msg)
    except pytest.fail.Exception as e:
        raise AssertionError(e.msg) from None
    except Ended:
        for pid in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
            os.kill(int(pid), signal.SIGKILL)                   # what the work started and left running
        os._exit(1)


def start() -> None:
    """How a background process starts: it writes nothing into the tests' captured output (its work returns what
    it printed), and it ends when the tests' process ends, however that ends (Linux's signal on a parent's death;
    it would otherwise wait for more work forever)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    for signum in (signal.SIGINT, signal.SIGTERM):             # (Ctrl-C comes to every process of the tests)
        signal.signal(signum, end)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def end(signum, frame) -> None:
    raise Ended
