"""Ctrl-C and SIGTERM end a script with one line and status 130, at any moment, imports included.

Imported first by every entry script, before torch. The handler removes the temporary files that
`report.write_unit` has registered, prints one line and exits at once: it raises nothing, so no
library that catches exceptions broadly (numpy's imports do) can swallow it and carry on half-done.
Signals are held back while a temporary file is created and registered, and during the renames.
"""
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEMPORARY: set[str] = set()          # files to remove if the run is cut short


def _stop(signum: int, frame) -> None:
    for path in list(TEMPORARY):
        try:
            os.unlink(path)
        except OSError:
            pass
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: interrupted ({signal.Signals(signum).name}); "
                     "no file was left half-written\n")
    sys.stderr.flush()
    os._exit(130)


def install() -> None:
    for signum in SIGNALS:
        signal.signal(signum, _stop)


class held:
    """A block during which SIGINT and SIGTERM wait (they are delivered when it ends)."""

    def __enter__(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)

    def __exit__(self, *exc) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
