"""Reading a child process's output as it comes (the signal tests)."""
import os

import pytest


def read_until(stream, text: bytes) -> None:
    """Read a child's pipe as it comes until text has come."""
    seen = b""
    while text not in seen:
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            pytest.fail(f"the pipe ended before {text!r}: {seen!r}")
        seen += chunk
