"""Ctrl-C and SIGTERM end a script with one line and status 130, from its first line on, imports included.

Imported first by every entry script, before torch. The handler ends the child processes that bench.py
has registered, removes the temporary files and folders that `report.write_unit` and bench.py have
registered, prints one line and exits at once: it raises nothing, so no library that catches
exceptions broadly (numpy's imports do) can swallow it and carry on half-done. Signals are held back
while a temporary file, folder or child is created and registered, and during the renames.

Once the outcome of a run is settled (its files written, or the interpreter shutting down), the
signals are ignored to the end: the run ends with its own status, and no line says otherwise.
Before the script's first line, Python's own start-up takes them as it does by default.
"""
import atexit
import os
import shutil
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEMPORARY: set[str] = set()          # files and folders to remove if the run is cut short
CHILDREN: set = set()                # subprocess.Popen objects to end first: they write into those folders


def _stop(signum: int, frame) -> None:
    if held.depth:
        held.waiting = signum
        return
    settle()                                         # a second signal cuts nothing short and adds no line
    for child in list(CHILDREN):
        child.kill()                                 # not SIGTERM, which a settled child ignores
        child.wait()
    for path in list(TEMPORARY):
        try:
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        except OSError:
            pass
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: interrupted ({signal.Signals(signum).name}); "
                     "no file was left half-written\n")
    sys.stderr.flush()
    os._exit(130)


def install() -> None:
    """Catch the signals from here on, and ignore them once the interpreter shuts down."""
    for signum in SIGNALS:
        signal.signal(signum, _stop)
    atexit.register(settle)


def settle() -> None:
    """Ignore the signals from here to the exit: as Python shuts down, it gives every signal that it
    handles back its default action (death, no line), but leaves an ignored one ignored."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class held:
    """A block during which SIGINT and SIGTERM wait (one that came is taken when it ends). Held here,
    where the handler runs, not by a signal mask: a mask holds them from one thread only, and the
    handler runs as soon as any other thread (torch's) takes one."""
    depth = 0
    waiting: int | None = None

    def __enter__(self) -> None:
        held.depth += 1

    def __exit__(self, *exc) -> None:
        held.depth -= 1
        if not held.depth and held.waiting is not None:
            _stop(held.waiting, None)
